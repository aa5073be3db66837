<?php

declare(strict_types=1);

namespace Courser\Relay;

use Courser\Exception\ProtocolException;
use Courser\Exception\RelayException;
use Courser\Frame;

/**
 * A two-way channel that carries Goridge frames between the worker and the
 * server.
 */
interface RelayInterface
{
    /**
     * Blocks until one complete frame has arrived, and returns it.
     *
     * @throws RelayException    on an I/O error, or when the other side closed the relay (EOF)
     * @throws ProtocolException when the bytes are not a valid frame
     */
    public function waitFrame(): Frame;

    /**
     * Writes one complete frame.
     *
     * @throws RelayException on an I/O error
     */
    public function send(Frame $frame): void;

    /**
     * Tells, without blocking, whether input is waiting to be read: a frame,
     * or the end of the stream (in which case the next waitFrame() throws).
     *
     * @throws RelayException when the input cannot be polled
     */
    public function hasFrame(): bool;
}
