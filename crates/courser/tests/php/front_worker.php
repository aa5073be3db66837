<?php
// HTTP front test worker for tests/http.rs, on the low-level Courser\Worker so
// that the tests see the request context and body exactly as the server sent
// them (JSON codec). The path picks a behaviour.
declare(strict_types=1);
require __DIR__ . '/../../../../php/autoload.php';

use Courser\Frame;
use Courser\Payload;
use Courser\Worker;

require __DIR__ . '/upload_leaves.php';

$worker = Worker::create();
$n = 0;
while ($req = $worker->waitPayload()) {
    $n++;
    $ctx = json_decode($req->context, true) ?: [];
    $path = parse_url($ctx['uri'] ?? '/', PHP_URL_PATH) ?: '/';
    parse_str($ctx['rawQuery'] ?? '', $q);
    $status = 200;
    $headers = ['Content-Type' => ['text/plain']];
    switch ($path) {
        case '/dump':
            // The context as JSON on the first line, then the body exactly as received.
            $body = json_encode($ctx, JSON_UNESCAPED_SLASHES | JSON_INVALID_UTF8_SUBSTITUTE) . "\n" . $req->body;
            break;
        case '/uploads':
            $body = json_encode([
                'parsed' => $ctx['parsed'] ?? null,
                'form' => $req->body,
                'files' => upload_leaves(is_array($ctx['uploads'] ?? null) ? $ctx['uploads'] : []),
            ], JSON_UNESCAPED_SLASHES);
            $headers['Content-Type'] = ['application/json'];
            break;
        case '/count':
            // Jobs this process has run, this one included.
            $body = (string)$n;
            break;
        case '/pid':
            $body = (string)getmypid();
            break;
        case '/sleep':
            // Touches the file named by `mark` (so a test knows the job started), then sleeps.
            if (isset($q['mark'])) {
                touch((string)$q['mark']);
            }
            usleep((int)($q['ms'] ?? 100) * 1000);
            $body = 'slept';
            break;
        case '/cookies':
            $headers['Set-Cookie'] = ['a=1; Path=/', 'b=2; HttpOnly'];
            $body = 'two cookies';
            break;
        case '/trailer':
            $headers['Trailer'] = ['X-Checksum'];
            $headers['X-Checksum'] = ['abc'];
            $body = 'body-before-trailer';
            break;
        default:
            $body = "n=$n " . ($ctx['method'] ?? '?') . ' ' . $path;
    }
    $worker->respond(new Payload($body, json_encode(['status' => $status, 'headers' => $headers])), Frame::CODEC_JSON);
}
