<?php
// A framework-free Courser worker: it boots once, then answers requests in a loop.
// Courser hands each HTTP request over as a context (method, uri, headers, ...)
// and a body; HttpWorker decodes it and encodes the answer.
declare(strict_types=1);

require getenv('COURSER_SDK') ?: __DIR__ . '/../../php/autoload.php';

use Courser\Http\HttpWorker;

$http = HttpWorker::create();
$booted = date(DATE_ATOM);
$served = 0;

while ($req = $http->waitRequest()) {
    try {
        $served++;
        $path = parse_url($req->uri, PHP_URL_PATH) ?: '/';
        $text = ['Content-Type' => ['text/plain; charset=utf-8']];
        switch ($path) {
            case '/':
                $http->respond(200, "Hello, World!\n", $text);
                break;
            case '/info':
                $http->respond(200, json_encode([
                    'app' => getenv('APP_NAME'),
                    'pid' => getmypid(),
                    'booted' => $booted,
                    'served_by_this_worker' => $served,
                    'method' => $req->method,
                    'uri' => $req->uri,
                    'remote' => $req->getRemoteAddr(),
                ], JSON_PRETTY_PRINT | JSON_UNESCAPED_SLASHES) . "\n", ['Content-Type' => ['application/json']]);
                break;
            case '/form':
                // Form fields and uploads arrive parsed (try: curl -F f=@file -F x=1 .../form).
                $http->respond(200, json_encode(['fields' => $req->parsed, 'uploads' => $req->uploads], JSON_PRETTY_PRINT | JSON_UNESCAPED_SLASHES) . "\n", ['Content-Type' => ['application/json']]);
                break;
            case '/stream':
                // A streamed response: the client sees each line as it is produced.
                $http->respond(200, (function () {
                    for ($i = 1; $i <= 5; $i++) {
                        yield "line $i\n";
                        usleep(200000);
                    }
                })(), $text);
                break;
            default:
                $http->respond(404, "Not found: $path\n", $text);
        }
    } catch (\Throwable $e) {
        // Log to STDERR (Courser forwards it to its log) and fail only this request.
        fwrite(STDERR, (string)$e . "\n");
        $http->error('request failed');
    }
}
