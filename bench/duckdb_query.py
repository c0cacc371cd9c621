"""The peer: DuckDB computing the same per-key figures (usage per principal and operation,
successes, failures, first and last seen) from the same gzip files, reading only the fields
it needs (as keywatch does)."""
import sys, duckdb
corpus = sys.argv[1]
con = duckdb.connect()
con.execute("SET threads TO 2")
con.execute("SET preserve_insertion_order = false")
record = ("STRUCT(eventSource VARCHAR, eventName VARCHAR, eventTime VARCHAR, errorCode VARCHAR, "
          "userIdentity STRUCT(sessionContext STRUCT(sessionIssuer STRUCT(arn VARCHAR))), "
          "resources STRUCT(\"ARN\" VARCHAR)[])")
rows = con.execute(f"""
  WITH r AS (
    SELECT unnest(Records, max_depth := 2)
    FROM read_json('{corpus}/*.json.gz', columns = {{Records: '{record}[]'}}, maximum_object_size = 67108864)
  )
  SELECT resources[1]."ARN" AS key_arn,
         userIdentity.sessionContext.sessionIssuer.arn AS principal,
         eventName,
         count(*) FILTER (WHERE errorCode IS NULL) AS successes,
         count(*) FILTER (WHERE errorCode IS NOT NULL) AS failures,
         min(eventTime), max(eventTime)
  FROM r WHERE eventSource = 'kms.amazonaws.com'
  GROUP BY ALL
""").fetchall()
print(len(rows), "per-key rows")
