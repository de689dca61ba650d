#!/usr/bin/env node
// `docker-dso`: the `dso` command as a Docker CLI plugin (`docker dso …`). Install it by linking
// this file (not a copy: the import below is relative) as `docker-dso` into a Docker CLI plugin
// folder, e.g. `ln -s "$PWD/bin/docker-dso.js" ~/.docker/cli-plugins/docker-dso`.
import '../dist/docker-plugin-main.js';
