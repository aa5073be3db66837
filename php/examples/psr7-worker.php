<?php

/**
 * A PSR-7 worker on nyholm/psr7 (Debian: apt-get install php-nyholm-psr7).
 *
 *   GET /          Hello, World!
 *   GET /json      the request as JSON (method, path, query, headers, parsed body, uploads)
 *   GET /stream    a streamed response, one line every 100 ms
 *   GET /hints     103 Early Hints, then the page
 *
 * Run it behind Courser (or RoadRunner) with server.command: "php path/to/psr7-worker.php".
 */

declare(strict_types=1);

require __DIR__ . '/../autoload.php';           // or vendor/autoload.php with Composer
require_once '/usr/share/php/Nyholm/Psr7/autoload.php';

use Courser\Exception\StreamStoppedException;
use Courser\Http\PSR7Worker;
use Courser\Worker;
use Nyholm\Psr7\Factory\Psr17Factory;
use Psr\Http\Message\UploadedFileInterface;

$factory = new Psr17Factory();
$psr7 = new PSR7Worker(Worker::create(), $factory, $factory, $factory);

while ($request = $psr7->waitRequest()) {
    try {
        switch ($request->getUri()->getPath()) {
            case '/':
                $psr7->respond($factory->createResponse(200)
                    ->withHeader('Content-Type', 'text/plain; charset=utf-8')
                    ->withBody($factory->createStream('Hello, World!')));
                break;

            case '/json':
                $uploads = [];
                $files = $request->getUploadedFiles();
                array_walk_recursive($files, static function (UploadedFileInterface $file) use (&$uploads): void {
                    $uploads[] = ['name' => $file->getClientFilename(), 'size' => $file->getSize(), 'error' => $file->getError()];
                });
                $psr7->respond($factory->createResponse(200)
                    ->withHeader('Content-Type', 'application/json')
                    ->withBody($factory->createStream(json_encode([
                        'method' => $request->getMethod(),
                        'path' => $request->getUri()->getPath(),
                        'protocol' => $request->getProtocolVersion(),
                        'query' => $request->getQueryParams(),
                        'headers' => $request->getHeaders(),
                        'cookies' => $request->getCookieParams(),
                        'parsedBody' => $request->getParsedBody(),
                        'body' => (string) $request->getBody(),
                        'uploads' => $uploads,
                        'remoteAddr' => $request->getServerParams()['REMOTE_ADDR'] ?? null,
                        'pid' => getmypid(),
                    ], JSON_PRETTY_PRINT | JSON_UNESCAPED_SLASHES | JSON_THROW_ON_ERROR) . "\n")));
                break;

            case '/stream':
                $psr7->respondGenerator(200, ['Content-Type' => ['text/plain']], (static function (): Generator {
                    try {
                        for ($i = 1; $i <= 10; ++$i) {
                            yield "line $i\n";
                            usleep(100_000);
                        }
                    } catch (StreamStoppedException) {
                        return '';              // the client went away
                    }

                    return "done\n";
                })());
                break;

            case '/hints':
                $psr7->respond($factory->createResponse(103)->withHeader('Link', '</style.css>; rel=preload; as=style'));
                $psr7->respond($factory->createResponse(200)
                    ->withHeader('Content-Type', 'text/html')
                    ->withBody($factory->createStream("<!doctype html><link rel=stylesheet href=/style.css><p>Hello\n")));
                break;

            default:
                $psr7->respond($factory->createResponse(404)
                    ->withHeader('Content-Type', 'text/plain')
                    ->withBody($factory->createStream("Not Found\n")));
        }
    } catch (\Throwable $e) {
        $psr7->error((string) $e);
    }
}
