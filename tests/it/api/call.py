"""One SESv2 call through boto3: its outcome as JSON on stdout.

usage: call.py ENDPOINT KEY SECRET [--parallel] OPERATION JSON_PARAMETERS [OPERATION JSON ...]
Several calls run in a row, or all at once with --parallel (results in the order given).
"""
import json
import sys
from concurrent.futures import ThreadPoolExecutor

import ses_client

endpoint, key, secret = sys.argv[1:4]
ses = ses_client.client(endpoint, key, secret)
calls = sys.argv[4:]
parallel = calls[:1] == ["--parallel"]
calls = calls[1:] if parallel else calls
pairs = list(zip(calls[0::2], calls[1::2]))


def run(pair):
    operation, parameters = pair
    return ses_client.result_of(lambda: getattr(ses, operation)(**json.loads(parameters)))


if parallel:
    with ThreadPoolExecutor(max_workers=len(pairs)) as pool:
        results = list(pool.map(run, pairs))
else:
    results = [run(pair) for pair in pairs]
print(json.dumps(results, default=str))
