-- wrk script: GetRecords of the first page of shard 0 of the replay
-- endpoint's stream "replay" (bench/replay/server.js), over and over: how
-- many pages a second the endpoint itself can serve.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-amz-json-1.1"
wrk.headers["X-Amz-Target"] = "Kinesis_20131202.GetRecords"
wrk.body = '{"ShardIterator":"replay:replay:0:0","Limit":1000}'

done = function(summary, latency, requests)
   io.write(string.format('\nWRK_JSON {"requests":%d,"seconds":%.3f,"rps":%.1f,"bytes":%d,"status_errors":%d}\n',
      summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
      summary.bytes, summary.errors.status))
end
