"""What the boto3 test scripts share: a client for the relay, a recorder of each call's outcome,
and a check of every successful response body against botocore's SESv2 model (each member one
the model has, of the model's type, enum values included, and every required member there).

Use: ses = client(endpoint, key, secret); record = recorder(results); watch(ses, results);
record("name", lambda: ses.operation(...)). Shape problems go to results["shape_errors"].
"""
import json

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError


def client(endpoint, key, secret):
    return boto3.client(
        "sesv2", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id=key, aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}),
    )


def result_of(call):
    """{"ok": response} or {"error": code, "message": ..., "status": HTTP status}."""
    try:
        response = call()
        response.pop("ResponseMetadata", None)
        return {"ok": response}
    except ClientError as error:
        return {"error": error.response["Error"]["Code"],
                "message": error.response["Error"].get("Message", ""),
                "status": error.response["ResponseMetadata"]["HTTPStatusCode"]}


def recorder(results):
    def record(name, call):
        results[name] = result_of(call)
    return record

# Members poolrelay adds to SES's shapes, documented in the README; nothing else may differ.
EXTENSIONS = {
    "DedicatedIp": {"Weight", "EhloHostname", "ReverseDns", "Suspension"},
}


def check(shape, value, path, errors):
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            errors.append(f"{path}: expected an object, got {value!r}")
            return
        for key, item in value.items():
            if key not in shape.members:
                if key in EXTENSIONS.get(shape.name, ()):
                    continue
                errors.append(f"{path}.{key}: not in the model")
                continue
            check(shape.members[key], item, f"{path}.{key}", errors)
        for key in shape.required_members:
            if key not in value:
                errors.append(f"{path}.{key}: required but missing")
    elif kind == "list":
        if not isinstance(value, list):
            errors.append(f"{path}: expected a list, got {value!r}")
            return
        for index, item in enumerate(value):
            check(shape.member, item, f"{path}[{index}]", errors)
    elif kind == "map":
        if not isinstance(value, dict):
            errors.append(f"{path}: expected a map, got {value!r}")
            return
        for key, item in value.items():
            check(shape.value, item, f"{path}[{key}]", errors)
    elif kind == "string":
        if not isinstance(value, str):
            errors.append(f"{path}: expected a string, got {value!r}")
        elif shape.enum and value not in shape.enum:
            errors.append(f"{path}: {value!r} is not one of {shape.enum}")
    elif kind in ("integer", "long"):
        if not isinstance(value, int) or isinstance(value, bool):
            errors.append(f"{path}: expected an integer, got {value!r}")
    elif kind in ("double", "float"):
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            errors.append(f"{path}: expected a number, got {value!r}")
    elif kind == "boolean":
        if not isinstance(value, bool):
            errors.append(f"{path}: expected true or false, got {value!r}")
    elif kind == "timestamp":
        if not isinstance(value, (int, float, str)) or isinstance(value, bool):
            errors.append(f"{path}: expected a timestamp, got {value!r}")
    elif kind == "blob":
        if not isinstance(value, str):
            errors.append(f"{path}: expected base64 text, got {value!r}")


def watch(client, results):
    results.setdefault("shape_errors", [])
    results.setdefault("shapes_checked", [])

    def after_call(http_response, parsed, model, **kwargs):
        if not 200 <= http_response.status_code < 300 or model.output_shape is None:
            return
        body = json.loads(http_response.content or b"{}")
        errors = results["shape_errors"]
        shape = model.output_shape
        for key, item in body.items():
            member = shape.members.get(key)
            if member is None or member.serialization.get("location"):
                errors.append(f"{model.name}.{key}: not in the model's body")
                continue
            check(member, item, f"{model.name}.{key}", errors)
        for key in shape.required_members:
            if key not in body:
                errors.append(f"{model.name}.{key}: required but missing")
        results["shapes_checked"].append(model.name)

    client.meta.events.register("after-call.sesv2", after_call)
