"""The Matrix side: the appservice listener, the client calls we make, inbound processing."""
