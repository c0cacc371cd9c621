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


def of_type(kind):
    return {name: r for name, r in resources.items() if r.get("Type") == kind}


def sub_names(value):
    """The resources a Fn::Sub string names (${Name})."""
    if isinstance(value, dict) and "Fn::Sub" in value:
        text = value["Fn::Sub"]
        text = text[0] if isinstance(text, list) else text
        import re

        return set(re.findall(r"\$\{([A-Za-z0-9]+)\}", text))
    return set()


def alarms_on(namespace, metric, dimension_value):
    found = []
    for name, r in of_type("AWS::CloudWatch::Alarm").items():
        props = r["Properties"]
        if props.get("Namespace") != namespace or props.get("MetricName") != metric:
            continue
        dims = props.get("Dimensions", [])
        if dimension_value is None or any(ref_name(d.get("Value")) == dimension_value for d in dims):
            found.append(name)
    return found


functions = of_type("AWS::Serverless::Function")
# Every function's logs expire; every function's errors and every queue's depth alarm.
log_groups = {n for r in of_type("AWS::Logs::LogGroup").values() for n in sub_names(r["Properties"].get("LogGroupName"))
              if r["Properties"].get("RetentionInDays")}
for fn in functions:
    if fn not in log_groups:
        problems.append(f"{fn} has no log group with a retention")
    if not alarms_on("AWS/Lambda", "Errors", fn):
        problems.append(f"no alarm on {fn}'s errors")
for queue in of_type("AWS::SQS::Queue"):
    if not alarms_on("AWS/SQS", "ApproximateNumberOfMessagesVisible", queue):
        problems.append(f"no alarm on the depth of {queue}")
if not alarms_on("AWS/Lambda", "OffsetLag", "ProjectorFunction"):
    problems.append("no alarm on the projector's Kafka offset lag")
if not alarms_on("Keywatch", "RecordsRejected", None):
    problems.append("no alarm on RecordsRejected")
# Health alarms go to the operations topic, not to the pages about keys.
for name, r in of_type("AWS::CloudWatch::Alarm").items():
    actions = r["Properties"].get("AlarmActions", [])
    if not actions:
        problems.append(f"{name} notifies nobody")
    elif name != "PendingDeletionKeyUsageAlarm" and "OperationsTopic" not in str(actions):
        problems.append(f"{name} must notify the operations topic")
# The event source mapping in a VPC: the EC2 actions Lambda documents.
needed = {"ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces", "ec2:DescribeVpcs",
          "ec2:DeleteNetworkInterface", "ec2:DescribeSubnets", "ec2:DescribeSecurityGroups"}
granted = set()
for policy in functions["ProjectorFunction"]["Properties"].get("Policies", []):
    if isinstance(policy, dict):
        for st in policy.get("Statement", []):
            granted |= set(st.get("Action", []))
if not needed <= granted:
    problems.append(f"ProjectorFunction lacks {sorted(needed - granted)} for its Kafka event source in a VPC")
# Least privilege: exactly the DynamoDB actions the database adapter calls, read from its
# source (a TransactWriteItems needs the Put, Update and Delete it holds; CreateTable is
# `keywatch run --create-table`'s, not the functions'), metrics in keywatch's namespace,
# invocations bound to their source.
import pathlib, re
adapter = pathlib.Path(__file__).resolve().parent.parent / "crates/keywatch-aws/src/dynamo.rs"
called = set(re.findall(r"\.(get_item|batch_get_item|query|scan|put_item|update_item|delete_item|"
                        r"batch_write_item|transact_write_items|transact_get_items)\(\)",
                        adapter.read_text()))
iam = {"transact_write_items": ["PutItem", "UpdateItem", "DeleteItem"],
       "transact_get_items": ["GetItem"]}
allowed_dynamodb = set()
for op in called:
    for action in iam.get(op, ["".join(w.capitalize() for w in op.split("_"))]):
        allowed_dynamodb.add(f"dynamodb:{action}")
if not {"dynamodb:PutItem", "dynamodb:BatchWriteItem"} <= allowed_dynamodb:
    problems.append(f"read no DynamoDB calls from {adapter}: {sorted(called)}")
for fn in ["ProjectorFunction", "SweeperFunction"]:
    granted = set()
    for policy in functions[fn]["Properties"].get("Policies", []):
        if isinstance(policy, dict):
            for st in policy.get("Statement", []):
                granted |= set(st.get("Action", []))
    missing = allowed_dynamodb - granted
    if missing:
        problems.append(f"{fn} lacks {sorted(missing)}, which the database adapter calls")
for fn, r in functions.items():
    for policy in r["Properties"].get("Policies", []):
        text = str(policy)
        for managed in ["DynamoDBCrudPolicy", "CloudWatchPutMetricPolicy", "AmazonS3ReadOnlyAccess"]:
            if managed in text:
                problems.append(f"{fn} uses {managed}: grant the actions it calls instead")
        for st in policy.get("Statement", []) if isinstance(policy, dict) else []:
            actions = set(st.get("Action", [])) if isinstance(st.get("Action"), list) else {st.get("Action")}
            extra = {a for a in actions if str(a).startswith("dynamodb:")} - allowed_dynamodb
            if extra:
                problems.append(f"{fn} may {sorted(extra)}, which keywatch never calls")
            if "cloudwatch:PutMetricData" in actions and "cloudwatch:namespace" not in str(st.get("Condition")):
                problems.append(f"{fn}'s PutMetricData is not limited to keywatch's namespace")
            if "s3:GetObject" in actions and ":::*" in str(st.get("Resource")):
                problems.append(f"{fn} may read every bucket")
for name, r in of_type("AWS::Lambda::Permission").items():
    if "SourceArn" not in r["Properties"]:
        problems.append(f"{name} is not bound to its source (SourceArn)")
mapping = resources["ProjectorEventSource"]["Properties"]
configs = str(mapping.get("SourceAccessConfigurations"))
if configs.count("VPC_SUBNET") < 6 or configs.count("VPC_SECURITY_GROUP") < 6:
    problems.append("the event source mapping must take every subnet and security group given (up to six)")
# Lambda's invoke payload is 6 MB; a KMS record takes about 2.06 KB of a Kafka event
# (make bench-lambda: 10,000 records, 20.5 MB).
if not 0 < mapping.get("BatchSize", 100) * 2057 <= 6 * 1024 * 1024:
    problems.append(f"the event source mapping's BatchSize {mapping.get('BatchSize')} does not fit Lambda's 6 MB payload")
if "OnFailure" not in str(mapping.get("DestinationConfig")):
    problems.append("the event source mapping needs an on-failure destination (it also caps retries at 10)")
for kind in ["AWS::DynamoDB::Table", "AWS::SQS::Queue", "AWS::SNS::Topic", "AWS::KMS::Key", "AWS::Logs::LogGroup"]:
    for name, r in of_type(kind).items():
        if "'application'" not in str(r["Properties"].get("Tags")):
            problems.append(f"{name} lacks the tag application: keywatch")
outputs = template.get("Outputs", {})
for wanted in ["AlertTopicArn", "OperationsTopicArn", "TableName", "IngestDeadLetterQueueUrl",
               "ProjectorFailureQueueUrl", "SweeperDeadLetterQueueUrl", "IngestS3FunctionArn"]:
    if wanted not in outputs:
        problems.append(f"no output {wanted}")


# Each Kafka authentication the template offers, resolved as CloudFormation would: the
# functions' client and the event source mapping must speak the same one, with the secrets
# the functions may read.
def resolve(value, params, conditions):
    """The value with Fn::If, Ref to parameters and AWS::NoValue resolved (None for NoValue)."""
    if isinstance(value, dict):
        if "Fn::If" in value:
            name, yes, no = value["Fn::If"]
            return resolve(yes if holds(name, params, conditions) else no, params, conditions)
        if value.get("Ref") == "AWS::NoValue":
            return None
        if "Ref" in value and value["Ref"] in params:
            return params[value["Ref"]]
        return {k: v for k, v in ((k, resolve(v, params, conditions)) for k, v in value.items()) if v is not None}
    if isinstance(value, list):
        return [v for v in (resolve(v, params, conditions) for v in value) if v is not None]
    return value


def holds(name, params, conditions):
    def truth(c):
        if isinstance(c, dict):
            if "Condition" in c:
                return holds(c["Condition"], params, conditions)
            if "Fn::Equals" in c:
                a, b = (resolve(x, params, conditions) for x in c["Fn::Equals"])
                return a == b
            if "Fn::Not" in c:
                return not truth(c["Fn::Not"][0])
            if "Fn::And" in c:
                return all(truth(x) for x in c["Fn::And"])
            if "Fn::Or" in c:
                return any(truth(x) for x in c["Fn::Or"])
        raise ValueError(f"condition {name}: cannot evaluate {c!r}")
    return truth(conditions[name])


conditions = template["Conditions"]
env = template["Globals"]["Function"]["Environment"]["Variables"]
expected = {
    "SASL_SCRAM_512": ("SASL_SSL", "SCRAM-SHA-512", "SASL_SCRAM_512_AUTH", "KEYWATCH_KAFKA_SECRET_ARN"),
    "SASL_SCRAM_256": ("SASL_SSL", "SCRAM-SHA-256", "SASL_SCRAM_256_AUTH", "KEYWATCH_KAFKA_SECRET_ARN"),
    "CLIENT_CERTIFICATE_TLS": ("SSL", None, "CLIENT_CERTIFICATE_TLS_AUTH", "KEYWATCH_KAFKA_CLIENT_CERTIFICATE_SECRET_ARN"),
    "NONE": ("PLAINTEXT", None, None, None),
}
offered = template["Parameters"]["KafkaAuthentication"]["AllowedValues"]
if sorted(offered) != sorted(expected):
    problems.append(f"KafkaAuthentication offers {offered}; this check knows {sorted(expected)}")
secret_vars = ["KEYWATCH_KAFKA_SECRET_ARN", "KEYWATCH_KAFKA_CLIENT_CERTIFICATE_SECRET_ARN", "KEYWATCH_KAFKA_ROOT_CA_SECRET_ARN"]
for auth, (protocol, mechanism, access, secret_var) in expected.items():
    for root_ca in ["", "arn:root-ca"]:
        params = {"KafkaAuthentication": auth, "KafkaSecretArn": "arn:secret" if auth != "NONE" else "",
                  "KafkaRootCaSecretArn": root_ca, "KafkaSubnetIds": ["subnet-1"], "KafkaSecurityGroupIds": ["sg-1"]}
        got = resolve(env, params, conditions)
        what = f"with KafkaAuthentication={auth}" + (" and a root CA" if root_ca else "")
        if got.get("KEYWATCH_KAFKA_SECURITY_PROTOCOL") != protocol:
            problems.append(f"{what} the functions speak {got.get('KEYWATCH_KAFKA_SECURITY_PROTOCOL')}, not {protocol}")
        if got.get("KEYWATCH_KAFKA_SASL_MECHANISM") != mechanism:
            problems.append(f"{what} the functions' SASL mechanism is {got.get('KEYWATCH_KAFKA_SASL_MECHANISM')}, not {mechanism}")
        with_ca = root_ca and auth != "NONE"
        wanted_vars = {v for v in [secret_var, "KEYWATCH_KAFKA_ROOT_CA_SECRET_ARN" if with_ca else None] if v}
        if {v for v in secret_vars if v in got} != wanted_vars:
            problems.append(f"{what} the functions are given {sorted(v for v in secret_vars if v in got)}, not {sorted(wanted_vars)}")
        types = {c.get("Type") for c in resolve(mapping["SourceAccessConfigurations"], params, conditions)} - {"VPC_SUBNET", "VPC_SECURITY_GROUP"}
        wanted_types = {t for t in [access, "SERVER_ROOT_CA_CERTIFICATE" if with_ca else None] if t}
        if types != wanted_types:
            problems.append(f"{what} the event source mapping authenticates with {sorted(types)}, not {sorted(wanted_types)}")
        for fn in ["IngestFunction", "IngestS3Function", "ProjectorFunction"]:
            policies = str(resolve(resources[fn]["Properties"].get("Policies"), params, conditions))
            for arn in [params["KafkaSecretArn"] if auth != "NONE" else None, root_ca if with_ca else None]:
                if arn and f"'SecretArn': '{arn}'" not in policies:
                    problems.append(f"{what} {fn} may not read the secret {arn}")

# The stack keeps the S3 ingest function's notification on the trail's bucket (a custom
# resource: CloudFormation cannot change a bucket it does not own), after S3 may invoke it.
notification = resources.get("IngestS3TrailBucketNotification", {})
if notification.get("Type") != "Custom::TrailBucketNotification" or "IngestS3Permission" not in str(notification.get("DependsOn")):
    problems.append("the trail bucket's notification must be a custom resource that depends on IngestS3Permission")
elif ref_name(notification["Properties"].get("LambdaFunctionArn")) != "IngestS3Function":
    problems.append("the trail bucket's notification must invoke IngestS3Function")
role = resources.get("TrailBucketNotificationRole", {}).get("Properties", {})
for policy in role.get("Policies", []):
    for st in policy["PolicyDocument"]["Statement"]:
        if "*" in str(st.get("Resource")) or "s3:PutBucketNotification" in st["Action"] and "TrailBucketName" not in str(st["Resource"]):
            problems.append(f"TrailBucketNotificationRole's {st.get('Sid')} is not limited to its own resources")

if problems:
    sys.exit("infra/template.yaml: " + "; ".join(problems))
print(
    "infra/template.yaml: the alarm can notify its encrypted topic; every function's logs "
    "expire and its errors alarm; every queue's depth, the offset lag and rejected records "
    "alarm to the operations topic; the VPC permissions and the outputs are there; "
    "least privilege holds; the stack keeps the trail bucket's notification; every Kafka authentication is spoken alike by the functions and "
    "the event source mapping"
)
