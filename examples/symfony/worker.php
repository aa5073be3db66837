<?php
// A Symfony HttpKernel app served by Courser: the kernel is built once per
// worker process and handles every request that worker receives.
declare(strict_types=1);

require __DIR__ . '/bootstrap.php';

use App\AppFactory;
use Courser\Bridge\Symfony\SymfonyWorker;
use Courser\Http\HttpWorker;

$worker = new SymfonyWorker(static fn () => AppFactory::kernel(), HttpWorker::create());
$worker->run();
