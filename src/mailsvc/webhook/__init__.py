"""Webhooks: every change event of a tenant POSTed, signed, to its registered endpoints.

    changes ──NOTIFY──> fanout.py ──(one row per webhook and change)──> webhook_deliveries
                                     └─ enqueue `deliver_webhook(tenant, webhook, account)`
    deliverer.py: the account's oldest unfinished delivery, claimed under a lease,
                  POSTed (client.py, signed by signing.py), then succeeded, retried
                  with backoff, or given up; the next one goes only after that.
    tasks.py: the arq job, the sweep cron (lost jobs, dead workers' leases), and the
              fan-out task's start and stop in the worker.

The change log and the delivery rows are the only state: a worker can die at any
point and another one carries on, delivering each event at least once, in order per
account (receivers dedupe on `Webhook-Id`).
"""
