<?php
// The same Slim app (../app.php) as a classic front controller, for nginx +
// PHP-FPM: built and run once per request. bench/ compares the two ways of
// serving it; Courser itself does not use this file.
declare(strict_types=1);

$app = require __DIR__ . '/../app.php';
$app->run();
