"""SendEmail, SendBulkEmail and templates through boto3 against a running poolrelay: every
call's outcome as JSON on stdout.

usage: send.py ENDPOINT ADMIN_KEY ADMIN_SECRET
"""
import json
import sys

import ses_client

endpoint, key, secret = sys.argv[1:4]
results = {}
ses = ses_client.client(endpoint, key, secret)
ses_client.watch(ses, results)
outcome = ses_client.recorder(results)

outcome("create_pool", lambda: ses.create_dedicated_ip_pool(
    PoolName="send-pool", Tags=[{"Key": "team", "Value": "growth"}]))
outcome("move_ip", lambda: ses.put_dedicated_ip_in_pool(Ip="127.0.0.3", DestinationPoolName="send-pool"))
outcome("create_set", lambda: ses.create_configuration_set(
    ConfigurationSetName="send-set", DeliveryOptions={"SendingPoolName": "send-pool"}))

outcome("simple", lambda: ses.send_email(
    FromEmailAddress="News Desk <news@sender.test>",
    Destination={"ToAddresses": ["to1@example.test", "To Two <to2@example.test>"],
                 "CcAddresses": ["cc@example.test"], "BccAddresses": ["bcc@example.test"]},
    ReplyToAddresses=["replies@sender.test"],
    Content={"Simple": {
        "Subject": {"Data": "Grüße from the API", "Charset": "UTF-8"},
        "Body": {"Text": {"Data": "plain body"}, "Html": {"Data": "<p>html body</p>"}},
        "Headers": [{"Name": "X-Campaign", "Value": "spring"}],
        "Attachments": [{"RawContent": b"attached bytes", "FileName": "note.txt",
                         "ContentType": "text/plain"}],
    }},
    ConfigurationSetName="send-set",
    EmailTags=[{"Name": "campaign", "Value": "spring"}],
))
raw = (b"From: raw@sender.test\r\nTo: raw-to@example.test\r\nSubject: raw via API\r\n"
       b"X-SES-MESSAGE-TAGS: source=raw\r\n\r\nraw body line\n")
outcome("raw", lambda: ses.send_email(
    Content={"Raw": {"Data": raw}}, ConfigurationSetName="send-set",
    EmailTags=[{"Name": "kind", "Value": "raw"}]))

for name in ["welcome", "receipt", "reset"]:
    outcome("create_template_" + name, lambda name=name: ses.create_email_template(
        TemplateName=name, TemplateContent={
            "Subject": "Hello {{name}}", "Text": "Dear {{name}}, order {{order.id}}",
            "Html": "<p>Dear {{name}}</p>"}))
outcome("template_exists", lambda: ses.create_email_template(
    TemplateName="welcome", TemplateContent={"Subject": "x", "Text": "y"}))
outcome("update_template", lambda: ses.update_email_template(
    TemplateName="welcome", TemplateContent={
        "Subject": "Welcome {{name}}", "Text": "Dear {{name}}, order {{order.id}}",
        "Html": "<p>Dear {{name}}</p>"}))
outcome("get_template", lambda: ses.get_email_template(TemplateName="welcome"))
pages, token = [], None
while True:
    kwargs = {"PageSize": 1}
    if token:
        kwargs["NextToken"] = token
    page = ses.list_email_templates(**kwargs)
    pages.append([t["TemplateName"] for t in page["TemplatesMetadata"]])
    token = page.get("NextToken")
    if not token or len(pages) > 10:
        break
results["template_pages"] = pages
outcome("bad_token", lambda: ses.list_email_templates(NextToken="not-a-token"))
outcome("templated", lambda: ses.send_email(
    FromEmailAddress="news@sender.test", Destination={"ToAddresses": ["templated@example.test"]},
    Content={"Template": {"TemplateName": "welcome",
                          "TemplateData": json.dumps({"name": "Ann <3", "order": {"id": 7}})}},
    ConfigurationSetName="send-set"))
outcome("bulk", lambda: ses.send_bulk_email(
    FromEmailAddress="news@sender.test",
    DefaultContent={"Template": {"TemplateName": "welcome",
                                 "TemplateData": json.dumps({"name": "friend", "order": {"id": 0}})}},
    BulkEmailEntries=[
        {"Destination": {"ToAddresses": ["bulk1@example.test"]},
         "ReplacementEmailContent": {"ReplacementTemplate": {
             "ReplacementTemplateData": json.dumps({"name": "Bo", "order": {"id": 1}})}},
         "ReplacementTags": [{"Name": "entry", "Value": "one"}]},
        {"Destination": {"ToAddresses": ["bulk2@example.test"]}},
        {"Destination": {"ToAddresses": ["not an address"]}},
    ],
    ConfigurationSetName="send-set",
    DefaultEmailTags=[{"Name": "campaign", "Value": "bulk"}]))
outcome("delete_template", lambda: ses.delete_email_template(TemplateName="reset"))
outcome("get_deleted_template", lambda: ses.get_email_template(TemplateName="reset"))

simple = {"Simple": {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}}}
outcome("unknown_set", lambda: ses.send_email(
    FromEmailAddress="news@sender.test", Destination={"ToAddresses": ["a@example.test"]},
    Content=simple, ConfigurationSetName="no-such-set"))
outcome("bad_address", lambda: ses.send_email(
    FromEmailAddress="news@sender.test", Destination={"ToAddresses": ["a@@example"]},
    Content=simple))
outcome("too_many_recipients", lambda: ses.send_email(
    FromEmailAddress="news@sender.test",
    Destination={"ToAddresses": ["r%d@example.test" % n for n in range(51)]}, Content=simple))
big = b"From: raw@sender.test\r\nTo: big@example.test\r\nSubject: big\r\n\r\n" + b"x" * 70 + b"\r\n"
outcome("too_large", lambda: ses.send_email(Content={"Raw": {"Data": big * 4000}}))
outcome("unimplemented_member", lambda: ses.send_email(
    FromEmailAddress="news@sender.test", Destination={"ToAddresses": ["a@example.test"]},
    Content=simple, ListManagementOptions={"ContactListName": "x"}))
outcome("header_injection", lambda: ses.send_email(
    FromEmailAddress="news@sender.test", Destination={"ToAddresses": ["a@example.test"]},
    Content={"Simple": {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}},
                        "Headers": [{"Name": "X-A", "Value": "v\r\nBcc: evil@example.test"}]}}))

outcome("tag_set", lambda: ses.tag_resource(
    ResourceArn="arn:aws:ses:us-east-1:000000000000:configuration-set/send-set",
    Tags=[{"Key": "owner", "Value": "mail-team"}, {"Key": "tier", "Value": "1"}]))
outcome("untag_set", lambda: ses.untag_resource(
    ResourceArn="arn:aws:ses:us-east-1:000000000000:configuration-set/send-set", TagKeys=["tier"]))
outcome("set_tags", lambda: ses.list_tags_for_resource(
    ResourceArn="arn:aws:ses:us-east-1:000000000000:configuration-set/send-set"))
outcome("pool_tags", lambda: ses.list_tags_for_resource(
    ResourceArn="arn:aws:ses:us-east-1:000000000000:dedicated-ip-pool/send-pool"))
outcome("tag_missing", lambda: ses.tag_resource(
    ResourceArn="arn:aws:ses:us-east-1:000000000000:configuration-set/nope",
    Tags=[{"Key": "a", "Value": "b"}]))
outcome("tracking", lambda: ses.put_configuration_set_tracking_options(
    ConfigurationSetName="send-set", CustomRedirectDomain="t.sender.test"))
outcome("warmup_50", lambda: ses.put_dedicated_ip_warmup_attributes(Ip="127.0.0.3", WarmupPercentage=50))
outcome("warmup_read", lambda: ses.get_dedicated_ip(Ip="127.0.0.3"))
outcome("account_warmup_empty", lambda: ses.put_account_dedicated_ip_warmup_attributes())
outcome("account", lambda: ses.get_account())

outcome("pause_set", lambda: ses.put_configuration_set_sending_options(
    ConfigurationSetName="send-set", SendingEnabled=False))
outcome("paused_set", lambda: ses.get_configuration_set(ConfigurationSetName="send-set"))
outcome("send_paused", lambda: ses.send_email(
    FromEmailAddress="news@sender.test", Destination={"ToAddresses": ["a@example.test"]},
    Content=simple, ConfigurationSetName="send-set"))
outcome("resume_set", lambda: ses.put_configuration_set_sending_options(
    ConfigurationSetName="send-set", SendingEnabled=True))
outcome("pause_account", lambda: ses.put_account_sending_attributes(SendingEnabled=False))
outcome("send_account_paused", lambda: ses.send_email(
    FromEmailAddress="news@sender.test", Destination={"ToAddresses": ["a@example.test"]},
    Content=simple))
outcome("resume_account", lambda: ses.put_account_sending_attributes(SendingEnabled=True))
print(json.dumps(results, default=str))
