# Local Pub/Sub emulator for the streaming demo and tests/pubsub; see
# docs/pubsub.md. PUBSUB_PORT picks the port (default 8085).
.PHONY: pubsub-start pubsub-stop pubsub-status

pubsub-start:
	bash scripts/pubsub.sh start

pubsub-stop:
	bash scripts/pubsub.sh stop

pubsub-status:
	bash scripts/pubsub.sh status
