"""Deletion requests over time: the forget set deleted as a stream of requests, each one
a pass through the unlearning phases starting from the model the previous one deployed
(docs/requests.md). schedule.py says which examples each request deletes; plan.py plans
and certifies every request before any data are touched; run.py is the loop the runner
calls. Handing request k to the empirical audit is src/audit/stream_request.py's job."""
