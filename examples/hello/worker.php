<?php
// A framework-free Courser worker: boots once, then answers requests in a loop.
// Courser sends each HTTP request as a JSON context (method, uri, headers, ...)
// plus the raw body; the worker answers with a JSON context (status, headers) and a body.
declare(strict_types=1);

require __DIR__ . '/../../php/autoload.php';

use Courser\Payload;
use Courser\Worker;

$worker = Worker::create();
$booted = date(DATE_ATOM);
$served = 0;

while ($req = $worker->waitPayload()) {
    $served++;
    $ctx = json_decode($req->context, true) ?: [];
    $path = parse_url($ctx['uri'] ?? '/', PHP_URL_PATH) ?: '/';

    [$status, $type, $body] = match ($path) {
        '/' => [200, 'text/plain; charset=utf-8', "Hello, World!\n"],
        '/info' => [200, 'application/json', json_encode([
            'app' => getenv('APP_NAME'),
            'pid' => getmypid(),
            'booted' => $booted,
            'served_by_this_worker' => $served,
            'method' => $ctx['method'] ?? null,
            'uri' => $ctx['uri'] ?? null,
        ], JSON_PRETTY_PRINT) . "\n"],
        '/echo' => [200, $ctx['headers']['Content-Type'][0] ?? 'application/octet-stream', $req->body],
        default => [404, 'text/plain; charset=utf-8', "Not found: $path\n"],
    };

    $head = json_encode(['status' => $status, 'headers' => ['Content-Type' => [$type]]]);
    $worker->respond(new Payload($body, $head), Courser\Frame::CODEC_JSON);
}
