"""Verifies the first DKIM-Signature of a message with dkimpy (an implementation poolrelay's
authors did not write). The message comes on stdin; argv[1] is a JSON object of the TXT records
to answer DNS queries with ({"sel._domainkey.example.test": "v=DKIM1; ..."}). Prints one JSON
line: how many signatures, whether the first verifies, and its d= and a= tags."""

import json
import re
import sys

import dkim

records = {name.rstrip(".").lower(): value for name, value in json.loads(sys.argv[1]).items()}
message = sys.stdin.buffer.read()


def dnsfunc(name, timeout=5):
    if isinstance(name, bytes):
        name = name.decode()
    value = records.get(name.rstrip(".").lower())
    return value.encode() if value is not None else None


header_block = message.split(b"\r\n\r\n", 1)[0]
signatures = re.findall(rb"(?im)^DKIM-Signature:([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", header_block)
result = {"signatures": len(signatures), "verified": False, "d": None, "a": None, "error": None}
if signatures:
    tags = dict(
        (k.strip().decode(), v.strip().decode())
        for k, v in (t.split(b"=", 1) for t in re.sub(rb"\s+", b"", signatures[0]).split(b";") if b"=" in t)
    )
    result["d"] = tags.get("d")
    result["a"] = tags.get("a")
    result["h"] = tags.get("h")
    try:
        result["verified"] = bool(dkim.DKIM(message, minkey=1024).verify(idx=0, dnsfunc=dnsfunc))
    except dkim.ValidationError as error:
        result["error"] = str(error)
print(json.dumps(result))
