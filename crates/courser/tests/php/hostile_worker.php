<?php
// Worker for tests/hostile.rs. Every request it is given is appended as one
// JSON line (method, uri, body length, content-length header, transfer-encoding
// seen) to the file named by HOSTILE_LOG before it answers, so a test can prove
// which requests reached PHP and which never did. `/uploads` answers with the
// upload leaves as PHP sees them.
declare(strict_types=1);
require __DIR__ . '/../../../../php/autoload.php';

use Courser\Frame;
use Courser\Payload;
use Courser\Worker;

require __DIR__ . '/upload_leaves.php';

$log = (string)getenv('HOSTILE_LOG');
$worker = Worker::create();
while ($req = $worker->waitPayload()) {
    $ctx = json_decode($req->context, true) ?: [];
    $path = parse_url($ctx['uri'] ?? '/', PHP_URL_PATH) ?: '/';
    $headers = is_array($ctx['headers'] ?? null) ? $ctx['headers'] : [];
    file_put_contents($log, json_encode([
        'method' => $ctx['method'] ?? '',
        'uri' => $ctx['uri'] ?? '',
        'body' => strlen($req->body),
        'contentLength' => $headers['Content-Length'][0] ?? null,
    ], JSON_UNESCAPED_SLASHES | JSON_INVALID_UTF8_SUBSTITUTE) . "\n", FILE_APPEND | LOCK_EX);
    $type = 'text/plain';
    if ($path === '/uploads') {
        $body = json_encode(
            upload_leaves(is_array($ctx['uploads'] ?? null) ? $ctx['uploads'] : []),
            JSON_UNESCAPED_SLASHES | JSON_INVALID_UTF8_SUBSTITUTE
        );
        $type = 'application/json';
    } else {
        $body = 'php ' . ($ctx['method'] ?? '?') . ' ' . $path . ' ' . strlen($req->body);
    }
    $worker->respond(
        new Payload($body, json_encode(['status' => 200, 'headers' => ['Content-Type' => [$type]]])),
        Frame::CODEC_JSON
    );
}
