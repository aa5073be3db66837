<?php
// A Slim 3 app served by Courser: the app (app.php) is built once per worker
// process, then SlimWorker runs every request through it (App::process()).
declare(strict_types=1);

require getenv('COURSER_SDK') ?: __DIR__ . '/../../php/autoload.php';  // the Courser SDK (COURSER_SDK: set by the server)

use Courser\Bridge\Slim\SlimWorker;

$app = require __DIR__ . '/app.php';

SlimWorker::create($app)->serve();
