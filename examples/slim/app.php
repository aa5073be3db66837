<?php
// The Slim 3 app itself: settings and routes, shared by both front ends.
// worker.php (Courser) builds it once per worker process; public/index.php
// (nginx + PHP-FPM, used by bench/) builds it on every request.
// Returns the configured \Slim\App.
declare(strict_types=1);

require_once '/usr/share/php/Slim/autoload.php';   // Debian's php-slim (3.12)

use Psr\Http\Message\ResponseInterface as Response;
use Psr\Http\Message\ServerRequestInterface as Request;

$app = new \Slim\App([
    'settings' => [
        'displayErrorDetails' => (bool) getenv('APP_DEBUG'),
    ],
]);

$app->get('/', function (Request $request, Response $response): Response {
    return $response->withHeader('Content-Type', 'text/plain; charset=utf-8')
        ->write("Hello from Slim\n");
});

$app->get('/hello/{name}', function (Request $request, Response $response, array $args): Response {
    return $response->withHeader('Content-Type', 'text/plain; charset=utf-8')
        ->write(sprintf("Hello, %s\n", $args['name']));
});

$app->get('/items', function (Request $request, Response $response): Response {
    $items = [];
    for ($i = 1; $i <= 20; $i++) {
        $items[] = ['id' => $i, 'name' => "Item $i"];
    }

    return $response->withJson($items);
});

return $app;
