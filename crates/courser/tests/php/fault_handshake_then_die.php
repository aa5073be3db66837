<?php
// A worker that answers the PID handshake and then dies at once: the tightest
// crash loop a pool can meet (tests/faults.rs).
declare(strict_types=1);
require __DIR__ . '/../../../../php/autoload.php';

use Courser\Frame;
use Courser\Relay\Relay;

$relay = Relay::create(getenv('RR_RELAY') ?: Relay::DEFAULT_ADDRESS);
$relay->waitFrame(); // the PID request
$relay->send(new Frame(Frame::CONTROL, [], json_encode(['pid' => getmypid()])));
fwrite(STDERR, "fault_handshake_then_die: giving up right after the handshake\n");
exit(7);
