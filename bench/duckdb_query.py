"""The peer: DuckDB computing the same per-key figures (usage per principal and operation,
successes, failures, first and last seen) from the same gzip files."""
import sys, duckdb
corpus = sys.argv[1]
con = duckdb.connect()
con.execute("SET threads TO 2")
rows = con.execute(f"""
  WITH r AS (
    SELECT unnest(Records, max_depth := 2) FROM read_json('{corpus}/*.json.gz', format='auto', maximum_object_size=1073741824)
  )
  SELECT resources[1].ARN AS key_arn,
         userIdentity.sessionContext.sessionIssuer.arn AS principal,
         eventName,
         count(*) FILTER (WHERE errorCode IS NULL) AS successes,
         count(*) FILTER (WHERE errorCode IS NOT NULL) AS failures,
         min(eventTime)::VARCHAR, max(eventTime)::VARCHAR
  FROM r WHERE eventSource = 'kms.amazonaws.com'
  GROUP BY ALL
""").fetchall()
print(len(rows), "per-key rows")
