<?php
// The Courser worker: the application is built and booted once per worker
// process; LaravelWorker runs every request through the HTTP kernel and
// resets per-request state in between (see php/README.md).
declare(strict_types=1);

$app = require __DIR__ . '/bootstrap/app.php';
require getenv('COURSER_SDK') ?: __DIR__ . '/../../php/autoload.php';   // the Courser SDK

Courser\Bridge\Laravel\LaravelWorker::create($app)->serve();
