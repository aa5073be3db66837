<?php

/**
 * A framework-free worker on Courser\Http\HttpWorker.
 *
 *   GET  /          Hello, World!
 *   GET  /json      the request as JSON
 *   POST /form      echoes the parsed form fields and the uploaded files
 *   GET  /legacy    the same request seen through $_GET / $_SERVER (Globals::populate)
 *
 * Run it behind Courser (or RoadRunner) with server.command: "php path/to/plain-worker.php".
 */

declare(strict_types=1);

require __DIR__ . '/../autoload.php';           // or vendor/autoload.php with Composer

use Courser\Http\Globals;
use Courser\Http\HttpWorker;

$http = HttpWorker::create();

while ($request = $http->waitRequest()) {
    try {
        $path = parse_url($request->uri, PHP_URL_PATH) ?: '/';
        $json = ['Content-Type' => ['application/json']];

        switch ($path) {
            case '/':
                $http->respond(200, 'Hello, World!', ['Content-Type' => ['text/plain; charset=utf-8']]);
                break;

            case '/json':
                $http->respond(200, json_encode([
                    'method' => $request->method,
                    'uri' => $request->uri,
                    'protocol' => $request->protocol,
                    'query' => $request->query,
                    'headers' => $request->headers,
                    'cookies' => $request->cookies,
                    'remoteAddr' => $request->getRemoteAddr(),
                ], JSON_PRETTY_PRINT | JSON_UNESCAPED_SLASHES | JSON_THROW_ON_ERROR) . "\n", $json);
                break;

            case '/form':
                $http->respond(200, json_encode([
                    'parsed' => $request->parsed,     // null unless the body was urlencoded or multipart
                    'uploads' => $request->uploads,   // {name, mime, size, error, tmpName} leaves
                ], JSON_PRETTY_PRINT | JSON_UNESCAPED_SLASHES | JSON_THROW_ON_ERROR) . "\n", $json);
                break;

            case '/legacy':
                Globals::populate($request);
                $http->respond(200, sprintf(
                    "%s %s from %s, name=%s\n",
                    $_SERVER['REQUEST_METHOD'],
                    $_SERVER['REQUEST_URI'],
                    $_SERVER['REMOTE_ADDR'],
                    $_GET['name'] ?? '(none)',
                ), ['Content-Type' => ['text/plain']]);
                break;

            default:
                $http->respond(404, "Not Found\n", ['Content-Type' => ['text/plain']]);
        }
    } catch (\Throwable $e) {
        $http->error((string) $e);
    }
}
