<?php
// Echo worker on Courser's PHP SDK: answers every job with its body and a fixed
// HTTP-style JSON context. Used by bench/pool-roundtrip to show the SDK's cost.
declare(strict_types=1);

require __DIR__ . '/../../php/autoload.php';

use Courser\Frame;
use Courser\Payload;
use Courser\Worker;

$w = Worker::create();
while ($p = $w->waitPayload()) {
    $w->respond(new Payload($p->body, '{"status":200,"headers":{}}'), Frame::CODEC_JSON);
}
