<?php

/**
 * Benchmark worker: answers every job with a fixed plain-text HTTP response
 * (JSON context, flags 0x08).
 */

declare(strict_types=1);

require __DIR__ . '/../../php/autoload.php';

use Courser\Frame;
use Courser\Payload;
use Courser\Worker;

$worker = Worker::create();
$response = new Payload('Hello, World!', '{"status":200,"headers":{"Content-Type":["text/plain"]}}');

while ($worker->waitPayload() !== null) {
    $worker->respond($response, Frame::CODEC_JSON);
}
