#!/usr/bin/env python3
"""Writes deploy/grafana/tether-dashboard.json: the tether dashboard (Grafana 10+, a Prometheus
data source chosen at import). Edit the panels here and run it again; the JSON is committed."""
import json
import os

PANELS = [
    # (title, unit, [(expr, legend)], width)
    ("Requests per second by route", "reqps",
     [('sum by (route) (rate(tether_requests_total[$__rate_interval]))', "{{route}}")], 12),
    ("Errors (5xx) per second by route and code", "reqps",
     [('sum by (route, code) (rate(tether_requests_total{code=~"5.."}[$__rate_interval]))', "{{route}} {{code}}")], 12),
    ("Latency quantiles", "s",
     [(f'histogram_quantile({q}, sum by (le) (rate(tether_request_duration_seconds_bucket[$__rate_interval])))', f"p{int(q * 100)}")
      for q in (0.5, 0.95, 0.99)], 12),
    ("Sessions per second by outcome", "ops",
     [(f'sum(rate(tether_session_{o}_total[$__rate_interval]))', o) for o in ("created", "routed", "failed_open", "failed_closed")], 12),
    ("Rejected tokens per second by reason", "ops",
     [('sum by (reason) (rate(tether_session_rejected_total[$__rate_interval]))', "{{reason}}")], 12),
    ("Backends: healthy, draining, ejected", "short",
     [('sum by (cluster) (tether_backend_healthy)', "{{cluster}} healthy"),
      ('sum by (cluster) (tether_backend_draining)', "{{cluster}} draining"),
      ('sum by (cluster) (tether_backend_ejected)', "{{cluster}} ejected")], 12),
    ("Drain progress: sessions still routed to draining backends", "ops",
     [('sum by (cluster, backend) (rate(tether_backend_sessions_routed_total[$__rate_interval])) '
       'and on (cluster, backend) (tether_backend_draining == 1)', "{{cluster}}/{{backend}}")], 12),
    ("Discovery: backends found and failed rounds", "short",
     [('sum by (cluster) (tether_discovery_backends)', "{{cluster}} backends"),
      ('sum by (cluster) (increase(tether_discovery_errors_total[$__rate_interval]))', "{{cluster}} errors")], 12),
    ("Certificate expiry (days left)", "d",
     [('min by (listener, certificate) ((tether_tls_certificate_expiry_timestamp_seconds - time()) / 86400)', "{{listener}} {{certificate}}")], 12),
    ("TLS handshakes per second by version", "ops",
     [('sum by (version) (rate(tether_tls_handshakes_total[$__rate_interval]))', "{{version}}")], 12),
]


def panel(i, title, unit, targets, width):
    return {
        "id": i + 1,
        "type": "timeseries",
        "title": title,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 8, "w": width, "x": (i % 2) * 12, "y": (i // 2) * 8},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": [{"refId": chr(65 + j), "expr": expr, "legendFormat": legend}
                    for j, (expr, legend) in enumerate(targets)],
    }


dashboard = {
    "title": "tether",
    "uid": "tether",
    "tags": ["tether", "load-balancer"],
    "timezone": "browser",
    "schemaVersion": 39,
    "refresh": "30s",
    "time": {"from": "now-1h", "to": "now"},
    "templating": {"list": [{
        "name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus",
    }]},
    "panels": [panel(i, *p) for i, p in enumerate(PANELS)],
}

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tether-dashboard.json")
with open(out, "w") as f:
    json.dump(dashboard, f, indent=2)
    f.write("\n")
print(out)
