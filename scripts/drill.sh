#!/bin/sh
# Runs drill (a) for a person to watch: a real service is killed, Prometheus fires,
# Alertmanager delivers to Jarvis, Jarvis restarts the service over SSH and verifies the
# fix in Prometheus. Needs prometheus, prometheus-alertmanager and openssh-server
# installed (as .ci/run does). Takes about ten seconds once built.
set -eu
cd "$(dirname "$0")/.."
echo "Building and running drill (a)..."
exec cargo test --test it drills::drill_a -- --nocapture --exact \
    drills::drill_a_a_killed_service_is_restarted_by_its_hint_and_verified
