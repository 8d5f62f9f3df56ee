# Local Flink session cluster for Beam's FlinkRunner; docs/flink.md has
# the details.
#   make flink-start       start Flink 1.19 on 127.0.0.1:8081
#   make flink-stop        stop it
#   make flink-job-server  build the job server jar and print its path
#   make flink-test        run the tests marked flink against the cluster

.PHONY: flink-start flink-stop flink-status flink-job-server flink-test

flink-start:
	bash scripts/flink.sh start

flink-stop:
	bash scripts/flink.sh stop

flink-status:
	bash scripts/flink.sh status

flink-job-server:
	bash scripts/flink_job_server.sh

flink-test: $(STAMP)
	$(PY) -m pytest -m flink tests/flink
