<?php
// The PHP-FPM front controller (what the benchmark compares against): the
// application is built, booted and thrown away on every request.
declare(strict_types=1);

$app = require __DIR__ . '/../bootstrap/app.php';

$kernel = $app->make(Illuminate\Contracts\Http\Kernel::class);
$response = $kernel->handle($request = Illuminate\Http\Request::capture());
$response->send();
$kernel->terminate($request, $response);
