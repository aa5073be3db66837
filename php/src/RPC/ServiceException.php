<?php

declare(strict_types=1);

namespace Courser\RPC;

/**
 * The server answered the call with an error frame (flag ERROR, 0x40), for
 * example "rpc: can't find method informer.Nope". The message reads
 * "Error '<server text>' on <address>", as with the official client;
 * getServerMessage() returns the server's text alone.
 */
class ServiceException extends RPCException
{
    public function __construct(
        private readonly string $serverMessage,
        string $address,
        private readonly string $method = '',
    ) {
        parent::__construct(sprintf("Error '%s' on %s", $serverMessage, $address));
    }

    /**
     * Returns the error text exactly as the server sent it.
     */
    public function getServerMessage(): string
    {
        return $this->serverMessage;
    }

    /**
     * Returns the method that failed (Service.Method).
     */
    public function getMethod(): string
    {
        return $this->method;
    }
}
