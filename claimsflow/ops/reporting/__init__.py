"""What a run leaves for people and machines: the HTML run report, its data-quality
gate (claimsflow.ops.quality) and its Prometheus metrics (claimsflow.ops.metrics).

Modules:
    runlog   one run's facts, read from the event log (never from the run's memory),
             so a report can be regenerated at any time with `adjudicate report`
    svg      inline SVG charts (no script, no CDN: the report opens offline)
    html     the self-contained HTML report
    outputs  everything a finished nightly run publishes, in one call

Nothing is imported here on purpose: `claimsflow.ops.quality` imports `runlog`, and
`html` imports `claimsflow.ops.quality`'s result types.
"""
