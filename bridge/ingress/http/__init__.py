"""HTTP ingress (SPEC §6 HTTP): four dialects, each answering and reporting as its clients
expect, all calling the one Service.

- `bulksms`  — the bulk-SMS URL API (`1701|…` answers, reports to the account's dlr_url);
- `jsonapi`  — the JSON API with bearer tokens;
- `kannel`   — Kannel 1.4.5's /cgi-bin/sendsms, its answers and dlr-url %-escapes;
- `jasmin`   — Jasmin's /send, its answers and DLRs acknowledged with ACK/Jasmin;
- `common`   — parameter reading (strict %-escapes, repeats, sizes) and the Service call;
- `app`      — the routes, on the SOAP listener's application or one of their own.

Each dialect maps the §5 errors to its answers through one table (`ANSWERS`); a report's form
is the core's (bridge.core.dialect_reports), since the outbound side sends it.
"""
