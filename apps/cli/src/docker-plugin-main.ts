// The `docker-dso` executable: `dso` as a Docker CLI plugin (docker-plugin.ts).
import { connect } from 'node:net';
import { runDockerPlugin } from './docker-plugin.js';

// Docker hands a plugin a socket to hold (DOCKER_CLI_PLUGIN_SOCKET, an abstract socket written
// `@name`) and, when it is interrupted without a terminal to forward the signal, closes it: the
// plugin then stops as on Ctrl-C. Not holding it loses nothing but that stop.
const pluginSocket = process.env.DOCKER_CLI_PLUGIN_SOCKET;
if (pluginSocket) {
  const path = pluginSocket.startsWith('@') ? `\0${pluginSocket.slice(1)}` : pluginSocket;
  const socket = connect({ path });
  socket.on('error', () => {
    // No socket to hold (an older docker, or it is gone): only the stop-on-close is lost.
  });
  socket.on('close', (hadError) => {
    if (!hadError) process.kill(process.pid, 'SIGINT');
  });
  socket.unref();
}

process.exitCode = await runDockerPlugin(process.argv.slice(2), {
  env: process.env,
  stdin: process.stdin,
  stdout: process.stdout,
  stderr: process.stderr,
});
