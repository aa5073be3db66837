<?php
// Stateless routes (the 'api' middleware group): what the benchmark measures.
declare(strict_types=1);

use Illuminate\Support\Facades\Route;

Route::get('/', static fn () => response("Hello from Laravel\n", 200, ['Content-Type' => 'text/plain; charset=utf-8']));

Route::get('/hello/{name}', static fn (string $name) => response("Hello, $name\n", 200, ['Content-Type' => 'text/plain; charset=utf-8']));

Route::get('/items', static function () {
    $items = [];
    for ($i = 1; $i <= 20; $i++) {
        $items[] = ['id' => $i, 'name' => "Item $i"];
    }

    return response()->json($items);
});

// Which worker process answered (the tests use it to see a worker replaced).
Route::get('/pid', static fn () => response((string) getmypid(), 200, ['Content-Type' => 'text/plain']));

// Legacy code that reads the superglobals sees this request's values.
Route::get('/globals', static fn () => response()->json([
    'get' => $_GET,
    'cookie' => $_COOKIE,
    'request' => $_REQUEST,
    'uri' => $_SERVER['REQUEST_URI'] ?? null,
    'method' => $_SERVER['REQUEST_METHOD'] ?? null,
]));

// A streamed response: each line reaches the client as it is written.
Route::get('/stream', static fn () => response()->stream(static function (): void {
    for ($i = 1; $i <= 3; $i++) {
        echo "line $i\n";
        if (ob_get_level() > 0) {
            ob_flush();
        }
        flush();
        usleep(300000);
    }
}, 200, ['Content-Type' => 'text/plain; charset=utf-8']));
