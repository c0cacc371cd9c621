"""Checks of infra/template.yaml that cfn-lint does not make: what an operator relies on.

Run by `make lint` with the project's virtual environment (cfn-lint's template decoder).
Exits non-zero, naming what is wrong.
"""
import sys

from cfnlint.decode import decode

template, errors = decode(sys.argv[1] if len(sys.argv) > 1 else "infra/template.yaml")
if errors:
    sys.exit(f"template does not decode: {errors}")
resources = template["Resources"]
problems = []


def ref_name(value):
    """The resource a Ref or Fn::GetAtt names."""
    if isinstance(value, dict):
        if "Ref" in value:
            return value["Ref"]
        if "Fn::GetAtt" in value:
            att = value["Fn::GetAtt"]
            return att[0] if isinstance(att, list) else str(att).split(".")[0]
    return None


# The alarm notifies the paging topic, so CloudWatch must be able to use the topic's key:
# not the AWS managed alias/aws/sns key, but a customer managed key admitting
# cloudwatch.amazonaws.com.
topic = resources.get("AlertTopic", {}).get("Properties", {})
key_name = ref_name(topic.get("KmsMasterKeyId"))
if topic.get("KmsMasterKeyId") == "alias/aws/sns" or key_name is None:
    problems.append("AlertTopic must be encrypted with a customer managed key of the template")
else:
    statements = resources[key_name]["Properties"]["KeyPolicy"]["Statement"]
    admits = [
        s
        for s in statements
        if s.get("Effect") == "Allow"
        and s.get("Principal", {}).get("Service") == "cloudwatch.amazonaws.com"
        and {"kms:Decrypt", "kms:GenerateDataKey*"} <= set(s.get("Action", []))
    ]
    if not admits:
        problems.append(f"{key_name}'s key policy must allow cloudwatch.amazonaws.com kms:Decrypt and kms:GenerateDataKey*")
alarm = resources.get("PendingDeletionKeyUsageAlarm", {}).get("Properties", {})
if "AlarmActions" not in alarm:
    problems.append("PendingDeletionKeyUsageAlarm must notify the paging topic")

if problems:
    sys.exit("infra/template.yaml: " + "; ".join(problems))
print("infra/template.yaml: the alarm can notify its encrypted topic")
