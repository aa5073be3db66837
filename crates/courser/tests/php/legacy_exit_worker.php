<?php
// HttpWorker whose handler ends the process (tests/legacy.rs): the path picks how.
//   /pid    the worker's pid
//   /exit   buffers some output, then exit(4)
//   /fatal  calls an undefined function; nothing catches the Error: a fatal error
declare(strict_types=1);
require __DIR__ . '/../../../../php/autoload.php';

use Courser\Http\HttpWorker;

$http = HttpWorker::create();
while ($request = $http->waitRequest()) {
    switch (parse_url($request->uri, PHP_URL_PATH)) {
        case '/exit':
            ob_start();
            echo 'never sent';
            exit(4);
        case '/fatal':
            courser_e2e_no_such_function();
            break;
        default:
            $http->respond(200, (string) getmypid(), ['Content-Type' => ['text/plain']]);
    }
}
