#!/bin/sh
# First start: write a config from the example and stop, like the mautrix bridges do.
set -e
CONFIG=/data/config.yaml
if [ ! -f "$CONFIG" ]; then
  claude-bridge example-config -o "$CONFIG"
  chmod 600 "$CONFIG"
  echo "Wrote $CONFIG. Fill in homeserver.address/domain, appservice.address, database,"
  echo "hooks.tokens and bridge.permissions, then run"
  echo "  claude-bridge generate-registration -c $CONFIG -o /data/registration.yaml"
  echo "and give Synapse the registration (app_service_config_files)."
  exit 1
fi
exec "$@"
