#!/bin/sh
# First start without a config: write one from the example and stop, like the mautrix bridges.
# Any other command (setup, doctor, export, …) runs as given.
set -e
CONFIG=/data/config.yaml
if [ "$1" = "claude-bridge" ] && [ "$2" = "run" ] && [ ! -f "$CONFIG" ]; then
  claude-bridge example-config -o "$CONFIG"
  chmod 600 "$CONFIG"
  cat <<MSG
Wrote $CONFIG from the example. Fill in homeserver.address and .domain, appservice.address
(the URL Synapse reaches this container at), database, hooks.tokens and bridge.permissions, then
  docker run … claude-bridge generate-registration -c $CONFIG -o /data/claude-registration.yaml
give Synapse that registration (app_service_config_files), restart Synapse and start this again.
Values can also come from the environment: CLAUDE_BRIDGE__SECTION__KEY=value.
MSG
  exit 1
fi
exec "$@"
