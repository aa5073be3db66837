<?php

declare(strict_types=1);

namespace Courser\Bridge\Symfony;

use Courser\Http\Globals;
use Courser\Http\HttpWorker;
use Courser\Http\Request;
use Symfony\Component\HttpFoundation\BinaryFileResponse;
use Symfony\Component\HttpFoundation\File\UploadedFile;
use Symfony\Component\HttpFoundation\Request as SymfonyRequest;
use Symfony\Component\HttpFoundation\Response;
use Symfony\Component\HttpFoundation\StreamedResponse;
use Symfony\Component\HttpKernel\HttpKernelInterface;
use Symfony\Component\HttpKernel\KernelInterface;
use Symfony\Component\HttpKernel\TerminableInterface;
use Symfony\Contracts\Service\ResetInterface;

/**
 * Runs a Symfony HttpKernel in a Courser worker.
 *
 * The kernel is built (and, for a KernelInterface, booted) once per worker
 * process. Each request is converted from Courser\Http\Request to a Symfony
 * Request, handled, and the Response is converted back; then the kernel is
 * terminated (TerminableInterface) and the worker resets state:
 *
 *  - the `services_resetter` service of the kernel's container, when the
 *    kernel is a KernelInterface whose container has one (FrameworkBundle
 *    registers it; it calls reset() on every service tagged `kernel.reset`);
 *  - the kernel itself, when it implements ResetInterface;
 *  - every extra ResetInterface given to the constructor or to addResettable().
 *
 * Nothing else is reset: static properties, globals other than $_SERVER
 * (HttpWorker::waitRequest() assigns it per request) and services that are
 * not tagged/listed keep their state across requests.
 *
 * Responses: a plain Response is one frame. A BinaryFileResponse is read from
 * its file in chunks (honouring Range offsets set by prepare() and
 * deleteFileAfterSend()) and streamed frame by frame. A StreamedResponse's
 * callback output is captured through an output buffer in chunks of
 * $chunkSize and then streamed: the callback runs to the end before the first
 * chunk is sent, so its output is held in memory.
 *
 * An exception that escapes the kernel (for instance with $catch = false, or
 * from the conversion) is written to STDERR and reported with error(): the
 * server answers 500 and the worker keeps serving.
 */
final class SymfonyWorker
{
    private HttpKernelInterface $kernel;

    /** @var list<ResetInterface> */
    private array $resettables = [];

    /** @var array<array-key, mixed> the process's own $_SERVER, captured once */
    private array $baseServer;

    /**
     * @param HttpKernelInterface|callable(): HttpKernelInterface $kernel a kernel, or a factory called once
     * @param iterable<ResetInterface>                            $resettables services to reset after each request
     * @param resource|null                                       $log where to write exceptions (STDERR when null)
     */
    public function __construct(
        HttpKernelInterface|callable $kernel,
        private readonly HttpWorker $http,
        iterable $resettables = [],
        private readonly bool $catch = true,
        private readonly int $chunkSize = 65536,
        private $log = null,
    ) {
        $this->kernel = $kernel instanceof HttpKernelInterface ? $kernel : $kernel();
        if (!$this->kernel instanceof HttpKernelInterface) {
            throw new \InvalidArgumentException('The kernel factory must return an HttpKernelInterface.');
        }
        if ($this->kernel instanceof KernelInterface) {
            $this->kernel->boot();
        }
        foreach ($resettables as $service) {
            $this->addResettable($service);
        }
        $server = $_SERVER;
        $this->baseServer = is_array($server) ? $server : [];
    }

    public function addResettable(ResetInterface $service): void
    {
        $this->resettables[] = $service;
    }

    public function getKernel(): HttpKernelInterface
    {
        return $this->kernel;
    }

    /**
     * Serves requests until the server asks the worker to stop.
     */
    public function run(): void
    {
        while ($this->serveNext()) {
        }
    }

    /**
     * Waits for one request and answers it.
     *
     * @return bool false when the server asked the worker to stop
     */
    public function serveNext(): bool
    {
        $request = $this->http->waitRequest();
        if ($request === null) {
            return false;
        }
        $this->serve($request);

        return true;
    }

    /**
     * Answers one request; never throws for a failure of the application.
     */
    public function serve(Request $request): void
    {
        $symfonyRequest = null;
        $response = null;
        try {
            $symfonyRequest = $this->toSymfonyRequest($request);
            $response = $this->kernel->handle($symfonyRequest, HttpKernelInterface::MAIN_REQUEST, $this->catch);
            $response->prepare($symfonyRequest);
            $this->send($response);
        } catch (\Throwable $e) {
            $this->logThrowable($e);
            $this->http->error($e->getMessage() !== '' ? $e->getMessage() : get_class($e));
        } finally {
            try {
                if ($symfonyRequest !== null && $response !== null && $this->kernel instanceof TerminableInterface) {
                    $this->kernel->terminate($symfonyRequest, $response);
                }
            } catch (\Throwable $e) {
                $this->logThrowable($e);
            } finally {
                try {
                    $this->reset();
                } catch (\Throwable $e) {
                    // The response is already sent; log it and keep serving.
                    $this->logThrowable($e);
                }
            }
        }
    }

    /**
     * Converts a Courser request to a Symfony request.
     */
    public function toSymfonyRequest(Request $request): SymfonyRequest
    {
        return new SymfonyRequest(
            $request->query,
            $request->parsed ?? [],
            $request->attributes,
            $request->cookies,
            self::files($request->uploads),
            Globals::server($request, $this->baseServer),
            $request->isParsed() ? '' : $request->body,
        );
    }

    /**
     * Converts a response to the status, the headers and the body (a string or a generator of chunks).
     *
     * @return array{0: int, 1: array<string, list<string>>, 2: string|\Generator<int, string, mixed, string>}
     */
    public function fromSymfonyResponse(Response $response): array
    {
        $headers = [];
        foreach ($response->headers->allPreserveCaseWithoutCookies() as $name => $values) {
            $headers[(string) $name] = array_values(array_map('strval', array_filter($values, static fn ($v): bool => $v !== null)));
        }
        foreach ($response->headers->getCookies() as $cookie) {
            $headers['Set-Cookie'][] = (string) $cookie;
        }

        if ($response instanceof BinaryFileResponse) {
            $body = $this->fileChunks($response);
        } elseif ($response instanceof StreamedResponse) {
            $body = $this->streamedChunks($response);
        } else {
            $body = (string) $response->getContent();
        }

        return [$response->getStatusCode(), $headers, $body];
    }

    private function send(Response $response): void
    {
        [$status, $headers, $body] = $this->fromSymfonyResponse($response);
        $this->http->respond($status, $body, $headers);
    }

    /**
     * @return \Generator<int, string, mixed, string>
     */
    private function fileChunks(BinaryFileResponse $response): \Generator
    {
        // offset, maxlen, chunkSize and deleteFileAfterSend are protected: read them in the class scope.
        $state = (fn (): array => [$this->offset, $this->maxlen, $this->chunkSize, $this->deleteFileAfterSend])->call($response);
        [$offset, $maxlen, , $delete] = $state;
        $path = $response->getFile()->getPathname();

        if (!$response->isSuccessful()) {
            return (string) $response->getContent();
        }
        $handle = null;
        try {
            if ($maxlen === 0) {
                return '';
            }
            $handle = fopen($path, 'rb');
            if ($handle === false) {
                throw new \RuntimeException(sprintf('Cannot open "%s".', $path));
            }
            if ($offset !== 0) {
                fseek($handle, $offset);
            }
            $left = $maxlen;
            while ($left !== 0 && !feof($handle)) {
                $read = $left < 0 || $left > $this->chunkSize ? $this->chunkSize : $left;
                $data = fread($handle, $read);
                if ($data === false || $data === '') {
                    break;
                }
                if ($left > 0) {
                    $left -= strlen($data);
                }
                yield $data;
            }

            return '';
        } finally {
            if (is_resource($handle)) {
                fclose($handle);
            }
            if ($delete && is_file($path)) {
                @unlink($path);
            }
        }
    }

    /**
     * @return \Generator<int, string, mixed, string>
     */
    private function streamedChunks(StreamedResponse $response): \Generator
    {
        $chunks = [];
        $level = ob_get_level();
        ob_start(static function (string $buffer) use (&$chunks): string {
            if ($buffer !== '') {
                $chunks[] = $buffer;
            }

            return '';
        }, $this->chunkSize);
        try {
            $response->sendContent();
        } finally {
            while (ob_get_level() > $level) {
                ob_end_flush();
            }
        }

        // Merge the small pieces the handler may get (one per echo above the chunk size) into chunks.
        $pending = '';
        foreach ($chunks as $i => $chunk) {
            unset($chunks[$i]);
            $pending .= $chunk;
            if (strlen($pending) >= $this->chunkSize) {
                yield $pending;
                $pending = '';
            }
        }

        return $pending;
    }

    /**
     * Resets the services listed in the class comment.
     */
    public function reset(): void
    {
        if ($this->kernel instanceof KernelInterface) {
            $container = $this->kernel->getContainer();
            if ($container->has('services_resetter')) {
                $resetter = $container->get('services_resetter');
                if ($resetter instanceof ResetInterface || method_exists($resetter, 'reset')) {
                    $resetter->reset();
                }
            }
        }
        if ($this->kernel instanceof ResetInterface) {
            $this->kernel->reset();
        }
        foreach ($this->resettables as $service) {
            $service->reset();
        }
    }

    /**
     * Turns the upload tree into UploadedFile objects (test mode: the files
     * were not moved by PHP's own upload handling, so is_uploaded_file() is false).
     *
     * @param array<array-key, mixed> $uploads
     *
     * @return array<array-key, mixed>
     */
    public static function files(array $uploads): array
    {
        $files = [];
        foreach ($uploads as $key => $value) {
            if (!is_array($value)) {
                continue;
            }
            if (array_key_exists('tmpName', $value) && !is_array($value['tmpName'])) {
                $error = (int) ($value['error'] ?? UPLOAD_ERR_OK);
                $files[$key] = new UploadedFile(
                    (string) $value['tmpName'],
                    (string) ($value['name'] ?? ''),
                    isset($value['mime']) ? (string) $value['mime'] : null,
                    $error,
                    true,
                );
            } else {
                $files[$key] = self::files($value);
            }
        }

        return $files;
    }

    private function logThrowable(\Throwable $e): void
    {
        $log = $this->log ?? (defined('STDERR') ? STDERR : null);
        if (is_resource($log)) {
            fwrite($log, (string) $e . "\n");
        }
    }
}
