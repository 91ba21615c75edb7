#!/bin/sh
# Runs in the matrixdotorg/synapse image as root, before Synapse starts (service synapse-init).
#
# 1. `/start.py generate` writes /data/homeserver.yaml and a signing key on the first start
#    (SYNAPSE_SERVER_NAME, SYNAPSE_REPORT_STATS) and only fills in missing files afterwards.
# 2. The bridge writes its registration mode 0600 as its own user into the shared volume; Synapse
#    runs as 991:991 and could not read it there, so a copy it owns goes next to its config.
set -eu
/start.py generate
install -o "${UID:-991}" -g "${GID:-991}" -m 0600 \
  /registration/claude-registration.yaml /data/claude-bridge-registration.yaml
echo "registration installed as /data/claude-bridge-registration.yaml"
