/**
 * The host path: secret files in a host tmpfs directory per container or service, bind-mounted
 * read-only into the container. (Being written; see the module's final contract.)
 */
export {};
