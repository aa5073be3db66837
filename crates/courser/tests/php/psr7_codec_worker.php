<?php
// PSR-7 test worker (nyholm/psr7) for tests/http.rs: reports which codec the
// SDK detected from the first request, and echoes what PSR-7 code sees.
declare(strict_types=1);
require __DIR__ . '/../../../../php/autoload.php';
require_once '/usr/share/php/Nyholm/Psr7/autoload.php';

use Courser\Frame;
use Courser\Http\HttpWorker;
use Courser\Http\PSR7Worker;
use Courser\Worker;
use Nyholm\Psr7\Factory\Psr17Factory;

$factory = new Psr17Factory();
$psr7 = new PSR7Worker(Worker::create(), $factory, $factory, $factory);

while ($request = $psr7->waitRequest()) {
    try {
        $codec = match (HttpWorker::codec()) {
            Frame::CODEC_PROTO => 'proto',
            Frame::CODEC_JSON => 'json',
            default => 'none',
        };
        $psr7->respond($factory->createResponse(200)
            ->withHeader('Content-Type', 'application/json')
            ->withHeader('X-Codec', $codec)
            ->withBody($factory->createStream(json_encode([
                'codec' => $codec,
                'method' => $request->getMethod(),
                'path' => $request->getUri()->getPath(),
                'query' => $request->getQueryParams(),
                'cookies' => $request->getCookieParams(),
                'parsedBody' => $request->getParsedBody(),
                'multi' => $request->getHeader('X-Multi'),
            ], JSON_UNESCAPED_SLASHES | JSON_THROW_ON_ERROR))));
    } catch (\Throwable $e) {
        $psr7->error((string) $e);
    }
}
