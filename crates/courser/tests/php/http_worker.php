<?php
// HTTP test worker on the Courser SDK: the path picks a behaviour.
declare(strict_types=1);
require __DIR__ . '/../../../../php/autoload.php';

use Courser\Frame;
use Courser\Payload;
use Courser\Worker;

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
        case '/env':
            $body = json_encode(['RR_MODE' => getenv('RR_MODE'), 'RR_RELAY' => getenv('RR_RELAY'), 'RR_VERSION' => getenv('RR_VERSION'), 'APP_MARK' => getenv('APP_MARK')]);
            break;
        case '/uri':
            $body = (string)($ctx['uri'] ?? '') . ' ' . ($ctx['protocol'] ?? '');
            break;
        case '/stream':
            // A streamed response: N chunks, each after a short pause.
            $count = (int)($q['n'] ?? 5);
            $gen = (function () use ($count) {
                for ($i = 1; $i <= $count; $i++) {
                    usleep(20000);
                    yield "chunk$i\n";
                }
            })();
            $worker->respondStream($gen, json_encode(['status' => 200, 'headers' => ['Content-Type' => ['text/plain']]]), Frame::CODEC_JSON);
            continue 2;
        case '/big':
            $body = str_repeat("courser-big-body\n", (int)(($q['kb'] ?? 64) * 1024 / 17));
            break;
        case '/hints':
            // 103 Early Hints (a STREAM frame with status 103), then the final response.
            $worker->respondPartial(new Payload('', json_encode(['status' => 103, 'headers' => ['Link' => ['</app.css>; rel=preload; as=style']]])), Frame::CODEC_JSON);
            $status = 201;
            $headers['X-Final'] = ['yes'];
            $body = 'after hints';
            break;
        case '/pid':
            $body = (string)getmypid();
            break;
        case '/sleep':
            usleep((int)($q['ms'] ?? 100) * 1000);
            $body = 'slept';
            break;
        case '/crash':
            exit(9);
        case '/error':
            $worker->error('deliberate failure');
            continue 2;
        case '/stdout':
            // Bypasses the SDK's output redirection: raw bytes on the relay.
            $out = fopen('php://stdout', 'w');
            fwrite($out, "Hello from PHP\n");
            fflush($out);
            $body = 'unreachable';
            break;
        case '/echo':
            echo "this echo must go to stderr\n";
            $body = $req->body;
            break;
        case '/cookies':
            $headers['Set-Cookie'] = ['a=1; Path=/', 'b=2; HttpOnly'];
            $body = json_encode($ctx['cookies'] ?? null);
            break;
        default:
            $body = "n=$n " . ($ctx['method'] ?? '?') . ' ' . $path;
    }
    $worker->respond(new Payload($body, json_encode(['status' => $status, 'headers' => $headers])), Frame::CODEC_JSON);
}
