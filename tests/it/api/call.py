"""One SESv2 call through boto3: its outcome as JSON on stdout.

usage: call.py ENDPOINT KEY SECRET OPERATION [JSON_PARAMETERS]...   (several calls in a row)
"""
import json
import sys

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

endpoint, key, secret = sys.argv[1:4]
ses = boto3.client(
    "sesv2", endpoint_url=endpoint, region_name="us-east-1",
    aws_access_key_id=key, aws_secret_access_key=secret,
    config=Config(retries={"max_attempts": 1}),
)
results = []
calls = sys.argv[4:]
for operation, parameters in zip(calls[0::2], calls[1::2]):
    try:
        response = getattr(ses, operation)(**json.loads(parameters))
        response.pop("ResponseMetadata", None)
        results.append({"ok": response})
    except ClientError as error:
        results.append({"error": error.response["Error"]["Code"],
                        "message": error.response["Error"].get("Message", ""),
                        "status": error.response["ResponseMetadata"]["HTTPStatusCode"]})
print(json.dumps(results, default=str))
