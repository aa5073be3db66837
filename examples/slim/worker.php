<?php
// A Slim 3 app served by Courser: the app is built once per worker process,
// then SlimWorker runs every request through it (App::process()).
declare(strict_types=1);

require '/usr/share/php/Slim/autoload.php';   // Debian's php-slim (3.12)
require getenv('COURSER_SDK') ?: __DIR__ . '/../../php/autoload.php';  // the Courser SDK

use Courser\Bridge\Slim\SlimWorker;
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

SlimWorker::create($app)->serve();
