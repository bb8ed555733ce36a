"""The container stack of docker-compose.cpu.yml, run for real: images, bring-up, checks, teardown.

`vaani compose-check` (`make compose-check`) drives it with Docker where a daemon answers, else
with podman; `engine` hides the difference, `images` builds the images (the Debian base image
too, when no registry is reachable), `probes` asks the running services, `check` runs the steps.
"""
