<?php
// Plain mode (tests/legacy.rs): runs legacy_script.php per request with ScriptWorker.
// COURSER_LEGACY_CACHE names the directory for the rewritten copies.
declare(strict_types=1);
require __DIR__ . '/../../../../php/autoload.php';

use Courser\Http\ScriptWorker;

ScriptWorker::create(__DIR__ . '/legacy_script.php', cacheDir: getenv('COURSER_LEGACY_CACHE') ?: null);

while (ScriptWorker::accept()) {
    try {
        require ScriptWorker::script();
    } catch (\Throwable $e) {
        ScriptWorker::fail($e);
    }
    ScriptWorker::finish();
}
