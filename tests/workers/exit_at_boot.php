<?php

/**
 * Test worker that fails while booting: it reports an error on STDERR and
 * exits with status 3 before reading anything from the server.
 */

fwrite(STDERR, "boot failed: missing APP_KEY\n");
exit(3);
