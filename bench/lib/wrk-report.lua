-- wrk script: at the end, one JSON line on stdout with the request rate,
-- latency percentiles (milliseconds) and every kind of error, after wrk's
-- own report. Used by bench/lib/loadjob.js.
done = function(summary, latency, requests)
   local e = summary.errors
   local seconds = summary.duration / 1e6
   io.write(string.format(
      '\nWRK_JSON {"requests":%d,"seconds":%.3f,"rps":%.1f,"bytes":%d,' ..
      '"latency_ms":{"mean":%.3f,"p50":%.3f,"p90":%.3f,"p99":%.3f,"p999":%.3f,"max":%.3f},' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d,"status":%d}}\n',
      summary.requests, seconds, summary.requests / seconds, summary.bytes,
      latency.mean / 1000, latency:percentile(50) / 1000, latency:percentile(90) / 1000,
      latency:percentile(99) / 1000, latency:percentile(99.9) / 1000, latency.max / 1000,
      e.connect, e.read, e.write, e.timeout, e.status))
end
