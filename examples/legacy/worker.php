<?php

// Plain mode: runs the classic scripts in public/ once per request, as
// PHP-FPM would, in a worker process that stays up between requests.
// The loop stays in the global scope so that the scripts' variables are
// globals, as they are under PHP-FPM.

declare(strict_types=1);

require __DIR__ . '/../../php/autoload.php'; // or vendor/autoload.php

use Courser\Http\ScriptWorker;

// routeScripts: /about.php runs public/about.php; any other path public/index.php.
ScriptWorker::create(__DIR__ . '/public/index.php', routeScripts: true);

while (ScriptWorker::accept()) {
    try {
        require ScriptWorker::script();
    } catch (\Throwable $e) {
        ScriptWorker::fail($e);
    }
    ScriptWorker::finish();
}
