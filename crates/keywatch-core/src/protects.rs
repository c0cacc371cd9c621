//! What a key protects: the resources that AWS services name in the encryption context of
//! the KMS calls they make on a user's behalf, rolled up per key.

use crate::event::Principal;
use crate::record::EncryptionContext;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// How many resources a key's roll-up keeps (the smallest by type and ID, so that any order
/// of events keeps the same ones).
pub const MAX_PROTECTED_RESOURCES: usize = 1_000;
/// How many principals each resource keeps (likewise, the smallest).
pub const MAX_PRINCIPALS_PER_RESOURCE: usize = 10;
/// How many unknown encryption context key names a key keeps.
pub const MAX_OTHER_CONTEXT_KEYS: usize = 50;

/// The kind of a protected resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceType {
    /// An S3 bucket (objects under SSE-KMS, or the bucket key).
    S3Bucket,
    /// An EBS volume.
    EbsVolume,
    /// An EBS snapshot.
    EbsSnapshot,
    /// A Secrets Manager secret.
    Secret,
    /// A Systems Manager Parameter Store SecureString.
    SsmParameter,
    /// A DynamoDB table.
    DynamodbTable,
    /// An RDS DB instance or cluster.
    RdsDatabase,
    /// A CloudTrail trail's log files.
    CloudtrailTrail,
    /// A Lambda function's environment variables.
    LambdaFunction,
    /// An SQS queue.
    SqsQueue,
    /// An SNS topic.
    SnsTopic,
    /// A CloudWatch Logs log group.
    LogGroup,
}

impl ResourceType {
    /// The plural noun for a count of them.
    pub fn plural(self) -> &'static str {
        match self {
            ResourceType::S3Bucket => "S3 buckets",
            ResourceType::EbsVolume => "EBS volumes",
            ResourceType::EbsSnapshot => "EBS snapshots",
            ResourceType::Secret => "secrets",
            ResourceType::SsmParameter => "SSM parameters",
            ResourceType::DynamodbTable => "DynamoDB tables",
            ResourceType::RdsDatabase => "RDS databases",
            ResourceType::CloudtrailTrail => "CloudTrail trails",
            ResourceType::LambdaFunction => "Lambda functions",
            ResourceType::SqsQueue => "SQS queues",
            ResourceType::SnsTopic => "SNS topics",
            ResourceType::LogGroup => "log groups",
        }
    }

    /// The singular noun.
    pub fn singular(self) -> &'static str {
        let p = self.plural();
        p.strip_suffix('s').unwrap_or(p)
    }
}

/// A resource named by an encryption context.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ProtectedResource {
    /// Its kind.
    pub resource_type: ResourceType,
    /// Its identifier: a bucket name, a volume ID, a secret or table ARN or name…
    pub id: String,
}

impl ProtectedResource {
    /// A short name for people: the last part of an ARN, the name otherwise.
    pub fn short_name(&self) -> &str {
        let id = self.id.as_str();
        if !id.starts_with("arn:") {
            return id;
        }
        let resource = id.splitn(6, ':').nth(5).unwrap_or(id);
        match self.resource_type {
            // secret:name-AbCdEf, parameter/path/name, function:name
            ResourceType::Secret | ResourceType::LambdaFunction | ResourceType::LogGroup => {
                resource.split_once(':').map_or(resource, |(_, n)| n)
            }
            _ => resource.rsplit_once('/').map_or(resource, |(_, n)| n),
        }
    }
}

impl fmt::Display for ProtectedResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.resource_type.singular(), self.id)
    }
}

/// What one call's encryption context says: the resources it names, and the names of the
/// keys keywatch does not know (never their values, which may be data).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextResources {
    /// Resources named.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ProtectedResource>,
    /// Names of other encryption context keys.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_keys: Vec<String>,
}

impl ContextResources {
    /// Nothing named.
    pub fn is_empty(&self) -> bool {
        self.resources.is_empty() && self.other_keys.is_empty()
    }
}

/// Reads an encryption context (a JSON object of strings) as the services document it.
pub fn read_encryption_context(context: &EncryptionContext<'_>) -> ContextResources {
    let mut out = ContextResources::default();
    let text = |k: &str| {
        context
            .0
            .get(k)
            .map(|v| v.as_ref())
            .filter(|s| !s.is_empty())
    };
    for (key, value) in &context.0 {
        let value = value.as_ref();
        if value.is_empty() {
            continue;
        }
        let resource = match key.as_ref() {
            // An object ARN (arn:aws:s3:::bucket/key) or, with an S3 Bucket Key, the bucket's.
            "aws:s3:arn" => Some(value)
                .filter(|v| v.starts_with("arn:"))
                .and_then(|v| v.splitn(6, ':').nth(5))
                .map(|path| path.split('/').next().unwrap_or(path))
                .filter(|bucket| !bucket.is_empty())
                .map(|bucket| (ResourceType::S3Bucket, bucket.to_owned())),
            "aws:ebs:id" if value.starts_with("snap-") => {
                Some((ResourceType::EbsSnapshot, value.to_owned()))
            }
            "aws:ebs:id" => Some((ResourceType::EbsVolume, value.to_owned())),
            "SecretARN" => Some((ResourceType::Secret, value.to_owned())),
            // The version is part of the secret, not a resource of its own.
            "SecretVersionId" => None,
            "PARAMETER_ARN" => Some((ResourceType::SsmParameter, value.to_owned())),
            "aws:dynamodb:tableName" => {
                let table = match text("aws:dynamodb:subscriberId") {
                    Some(account) => format!("{account}/{value}"),
                    None => value.to_owned(),
                };
                Some((ResourceType::DynamodbTable, table))
            }
            "aws:dynamodb:subscriberId" => None,
            "aws:rds:db-id" | "aws:rds:dbc-id" => {
                Some((ResourceType::RdsDatabase, value.to_owned()))
            }
            "aws:cloudtrail:arn" => Some((ResourceType::CloudtrailTrail, value.to_owned())),
            "aws:lambda:FunctionArn" => Some((ResourceType::LambdaFunction, value.to_owned())),
            "aws:sqs:arn" => Some((ResourceType::SqsQueue, value.to_owned())),
            "aws:sns:topicArn" => Some((ResourceType::SnsTopic, value.to_owned())),
            "aws:logs:arn" => Some((ResourceType::LogGroup, value.to_owned())),
            other => {
                out.other_keys.push(truncate(other, 128));
                None
            }
        };
        if let Some((resource_type, id)) = resource {
            out.resources.push(ProtectedResource {
                resource_type,
                id: truncate_owned(id, 512),
            });
        }
    }
    out.resources.sort();
    out.resources.dedup();
    out.other_keys.sort();
    out.other_keys.dedup();
    out
}

fn truncate(s: &str, max: usize) -> String {
    truncate_owned(s.to_owned(), max)
}

/// `s`'s first `max` characters, without a copy when it is no longer (most are).
fn truncate_owned(mut s: String, max: usize) -> String {
    if s.len() > max {
        if let Some((at, _)) = s.char_indices().nth(max) {
            s.truncate(at);
        }
    }
    s
}

/// One protected resource's roll-up in a key's timeline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceUse {
    /// The resource.
    #[serde(flatten)]
    pub resource: ProtectedResource,
    /// Calls that named it.
    pub count: u64,
    /// First call.
    pub first_seen: Timestamp,
    /// Last call.
    pub last_seen: Timestamp,
    /// Who called (the first few by name).
    pub principals: BTreeSet<Principal>,
}

/// A key's blast radius: the resources its calls named, folded commutatively (any order and
/// batching of the same calls gives the same roll-up).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlastRadius {
    /// Resources, by type and ID.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ResourceUse>,
    /// More resources were seen than are kept.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub more_resources: bool,
    /// Unknown encryption context keys and how often they were seen.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub other_context_keys: BTreeMap<String, u64>,
}

impl BlastRadius {
    /// Whether nothing was seen.
    pub fn is_empty(&self) -> bool {
        self.resources.is_empty() && self.other_context_keys.is_empty()
    }

    /// Folds one call's encryption context.
    pub fn note(&mut self, seen: &ContextResources, principal: &Principal, at: Timestamp) {
        for r in &seen.resources {
            match self.resources.binary_search_by(|u| u.resource.cmp(r)) {
                Ok(i) => {
                    let u = &mut self.resources[i];
                    u.count += 1;
                    u.first_seen = u.first_seen.min(at);
                    u.last_seen = u.last_seen.max(at);
                    // A full set keeps the smallest principals: one past its largest would be
                    // copied in only to be dropped again, as most callers of a busy resource
                    // are. Most other calls come from principals already listed: no copy.
                    let past_a_full_set = u.principals.len() >= MAX_PRINCIPALS_PER_RESOURCE
                        && u.principals.last().is_some_and(|last| principal > last);
                    if !past_a_full_set {
                        if !u.principals.contains(principal) {
                            u.principals.insert(principal.clone());
                        }
                        if u.principals.len() > MAX_PRINCIPALS_PER_RESOURCE {
                            u.principals.pop_last();
                        }
                    }
                }
                Err(i) if i < MAX_PROTECTED_RESOURCES => {
                    self.resources.insert(
                        i,
                        ResourceUse {
                            resource: r.clone(),
                            count: 1,
                            first_seen: at,
                            last_seen: at,
                            principals: BTreeSet::from([principal.clone()]),
                        },
                    );
                    if self.resources.len() > MAX_PROTECTED_RESOURCES {
                        self.resources.pop();
                        self.more_resources = true;
                    }
                }
                Err(_) => self.more_resources = true,
            }
        }
        for k in &seen.other_keys {
            if let Some(n) = self.other_context_keys.get_mut(k) {
                *n += 1;
            } else {
                self.other_context_keys.insert(k.clone(), 1);
                if self.other_context_keys.len() > MAX_OTHER_CONTEXT_KEYS {
                    self.other_context_keys.pop_last();
                }
            }
        }
    }

    /// The resources first seen before `before` (all with `None`), summarised by type.
    pub fn summary(&self, before: Option<Timestamp>) -> Vec<ProtectedSummary> {
        let mut by_type: BTreeMap<ResourceType, ProtectedSummary> = BTreeMap::new();
        for u in self
            .resources
            .iter()
            .filter(|u| before.is_none_or(|b| u.first_seen < b))
        {
            let s = by_type
                .entry(u.resource.resource_type)
                .or_insert_with(|| ProtectedSummary {
                    resource_type: u.resource.resource_type,
                    count: 0,
                    examples: Vec::new(),
                    last_seen: u.last_seen,
                });
            s.count += 1;
            s.last_seen = s.last_seen.max(u.last_seen);
            if s.examples.len() < 3 {
                s.examples.push(u.resource.short_name().to_owned());
            }
        }
        by_type.into_values().collect()
    }
}

/// Protected resources of one type, as alerts carry them (`protects: [...]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtectedSummary {
    /// The type.
    pub resource_type: ResourceType,
    /// How many of them.
    pub count: u64,
    /// Up to three, by short name.
    pub examples: Vec<String>,
    /// The last call that named one.
    pub last_seen: Timestamp,
}

/// "2 S3 buckets (orders-prod, orders-archive), 1 secret (db-password-AbCd)".
pub fn describe(protects: &[ProtectedSummary]) -> String {
    protects
        .iter()
        .map(|p| {
            let noun = if p.count == 1 {
                p.resource_type.singular()
            } else {
                p.resource_type.plural()
            };
            let more = if p.count > p.examples.len() as u64 {
                ", …"
            } else {
                ""
            };
            format!("{} {noun} ({}{more})", p.count, p.examples.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ids_are_cut_at_a_character_count_not_a_byte() {
        assert_eq!(truncate_owned("é".repeat(600), 512), "é".repeat(512));
        assert_eq!(truncate_owned("a".repeat(512), 512), "a".repeat(512));
        assert_eq!(truncate_owned("é".repeat(300), 512), "é".repeat(300));
        assert_eq!(truncate("ab", 1), "a");
    }

    proptest::proptest! {
        /// However many principals call a resource, in whatever order and repetition, it
        /// keeps the smallest [`MAX_PRINCIPALS_PER_RESOURCE`] of them.
        #[test]
        fn a_resource_keeps_its_smallest_principals_in_any_order(
            calls in proptest::collection::vec(0usize..40, 1..200),
        ) {
            let bucket = ContextResources {
                resources: vec![ProtectedResource {
                    resource_type: ResourceType::S3Bucket,
                    id: "orders".to_owned(),
                }],
                other_keys: Vec::new(),
            };
            let principal =
                |i: usize| Principal(format!("arn:aws:iam::111122223333:role/service-{i}"));
            let mut radius = BlastRadius::default();
            for (n, i) in calls.iter().enumerate() {
                radius.note(&bucket, &principal(*i), Timestamp::from_millis(n as i64));
            }
            let mut expected: Vec<Principal> = calls.iter().map(|i| principal(*i)).collect();
            expected.sort();
            expected.dedup();
            expected.truncate(MAX_PRINCIPALS_PER_RESOURCE);
            let kept: Vec<Principal> = radius.resources[0].principals.iter().cloned().collect();
            proptest::prop_assert_eq!(kept, expected);
            proptest::prop_assert_eq!(radius.resources[0].count, calls.len() as u64);
        }
    }
}
