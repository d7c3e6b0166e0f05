"""boto3 against a running poolrelay: every call's outcome as JSON on stdout.

usage: sdk.py ENDPOINT ADMIN_KEY ADMIN_SECRET SEND_KEY SEND_SECRET
"""
import datetime
import json
import sys

import botocore.auth
import botocore.awsrequest
import botocore.credentials
import urllib.request

import ses_client

endpoint, admin_key, admin_secret, send_key, send_secret = sys.argv[1:6]
results = {}
outcome = ses_client.recorder(results)


def client(key, secret):
    return ses_client.client(endpoint, key, secret)


admin = client(admin_key, admin_secret)
ses_client.watch(admin, results)
outcome("create_pool", lambda: admin.create_dedicated_ip_pool(PoolName="sdk-pool"))
outcome("list_pools", lambda: admin.list_dedicated_ip_pools())
outcome("get_ipv6", lambda: admin.get_dedicated_ip(Ip="::1"))
outcome("move_ipv6", lambda: admin.put_dedicated_ip_in_pool(Ip="::1", DestinationPoolName="sdk-pool"))
outcome("ips_in_pool", lambda: admin.get_dedicated_ips(PoolName="sdk-pool"))
outcome("create_set", lambda: admin.create_configuration_set(
    ConfigurationSetName="sdk-set", DeliveryOptions={"SendingPoolName": "sdk-pool"}))
outcome("get_set", lambda: admin.get_configuration_set(ConfigurationSetName="sdk-set"))
outcome("missing_set", lambda: admin.get_configuration_set(ConfigurationSetName="nope"))
outcome("suppress", lambda: admin.put_suppressed_destination(EmailAddress="gone@example.test", Reason="BOUNCE"))
outcome("get_suppressed", lambda: admin.get_suppressed_destination(EmailAddress="gone@example.test"))


def all_pages(call, items_key, **kwargs):
    """Every item of a List operation, two per page; also how many pages it took."""
    items, token, pages = [], None, 0
    while pages < 50:
        page = call(PageSize=2, **({"NextToken": token} if token else {}), **kwargs)
        items += page[items_key]
        pages += 1
        token = page.get("NextToken")
        if not token:
            break
    return {"items": items, "pages": pages}


for n in range(5):
    admin.create_dedicated_ip_pool(PoolName="page-%d" % n)
    admin.create_configuration_set(ConfigurationSetName="page-set-%d" % n)
results["pool_pages"] = all_pages(admin.list_dedicated_ip_pools, "DedicatedIpPools")
results["set_pages"] = all_pages(admin.list_configuration_sets, "ConfigurationSets")
results["ip_pages"] = all_pages(admin.get_dedicated_ips, "DedicatedIps")
results["identity_pages"] = all_pages(admin.list_email_identities, "EmailIdentities")
outcome("made_up_token", lambda: admin.list_dedicated_ip_pools(NextToken="bWFkZS11cA"))
outcome("get_pool", lambda: admin.get_dedicated_ip_pool(PoolName="sdk-pool"))
outcome("delivery_options", lambda: admin.put_configuration_set_delivery_options(
    ConfigurationSetName="sdk-set", TlsPolicy="REQUIRE", MaxDeliverySeconds=600))
outcome("get_set_after", lambda: admin.get_configuration_set(ConfigurationSetName="sdk-set"))
outcome("account", lambda: admin.get_account())
outcome("account_suppression", lambda: admin.put_account_suppression_attributes(SuppressedReasons=["COMPLAINT"]))
outcome("set_suppression", lambda: admin.put_configuration_set_suppression_options(
    ConfigurationSetName="sdk-set", SuppressedReasons=["BOUNCE"]))
outcome("list_suppressed", lambda: admin.list_suppressed_destinations())
outcome("unsuppress", lambda: admin.delete_suppressed_destination(EmailAddress="gone@example.test"))
outcome("delete_set", lambda: admin.delete_configuration_set(ConfigurationSetName="page-set-0"))
outcome("delete_pool", lambda: admin.delete_dedicated_ip_pool(PoolName="page-0"))

outcome("wrong_secret", lambda: client(admin_key, "not the secret").list_dedicated_ip_pools())
outcome("unknown_key", lambda: client("AKIDUNKNOWN", admin_secret).list_dedicated_ip_pools())
outcome("send_key_on_admin", lambda: client(send_key, send_secret).list_dedicated_ip_pools())


# Sign with a clock twenty minutes slow.
real = botocore.auth.get_current_datetime
botocore.auth.get_current_datetime = lambda *a, **k: real(*a, **k) - datetime.timedelta(minutes=20)
outcome("old_date", lambda: admin.list_dedicated_ip_pools())
botocore.auth.get_current_datetime = real


def signed_raw(method, path, body, change_body_to=None):
    """A request signed by botocore, optionally with its body changed after signing."""
    request = botocore.awsrequest.AWSRequest(method=method, url=endpoint + path, data=body,
                                             headers={"Content-Type": "application/json"})
    credentials = botocore.credentials.Credentials(admin_key, admin_secret)
    botocore.auth.SigV4Auth(credentials, "ses", "us-east-1").add_auth(request)
    sent = change_body_to if change_body_to is not None else body
    raw = urllib.request.Request(endpoint + path, data=sent or None, method=method,
                                 headers=dict(request.headers.items()))
    try:
        with urllib.request.urlopen(raw) as response:
            return {"status": response.status, "body": json.loads(response.read() or b"{}")}
    except urllib.error.HTTPError as error:
        return {"status": error.code, "body": json.loads(error.read() or b"{}"),
                "type": error.headers.get("x-amzn-ErrorType")}


body = json.dumps({"PoolName": "raw-pool"}).encode()
results["changed_body"] = signed_raw("POST", "/v2/email/dedicated-ip-pools", body,
                                     json.dumps({"PoolName": "evil-pool"}).encode())
results["unknown_route"] = signed_raw("GET", "/v2/email/no-such-thing", b"")
print(json.dumps(results, default=str))
