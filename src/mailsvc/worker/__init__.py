"""arq worker: scheduled and heavy jobs, run by `mailsvc worker`."""
