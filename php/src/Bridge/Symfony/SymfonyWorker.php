<?php

declare(strict_types=1);

namespace Courser\Bridge\Symfony;

use Courser\Debug\LeakDetector;
use Courser\Http\HttpWorker;
use Courser\Http\Request;
use Symfony\Component\HttpFoundation\Request as SymfonyRequest;
use Symfony\Component\HttpFoundation\Response;
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
 * Nothing else is reset: static properties, globals other than the
 * superglobals (filled per request with Globals::populate()) and services
 * that are not tagged/listed keep their state across requests.
 *
 * Responses: a plain Response is one frame. A BinaryFileResponse is read from
 * its file in chunks (honouring Range offsets set by prepare() and
 * deleteFileAfterSend()) and streamed frame by frame. A StreamedResponse is
 * streamed while its callback runs: a frame per $chunkSize bytes of output
 * and per ob_flush() (HttpFoundationBridge::send()).
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

    private readonly HttpFoundationBridge $bridge;

    private readonly LeakDetector $leaks;

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
        ?LeakDetector $leaks = null,
    ) {
        $this->leaks = $leaks ?? LeakDetector::fromEnvironment();
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
        $this->bridge = new HttpFoundationBridge($chunkSize);
    }

    public function addResettable(ResetInterface $service): void
    {
        $this->resettables[] = $service;
    }

    public function getLeakDetector(): LeakDetector
    {
        return $this->leaks;
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
        return $this->http->serveOne($this->serve(...), 'Courser Symfony bridge');
    }

    /**
     * Answers one request; never throws for a failure of the application.
     */
    public function serve(Request $request): void
    {
        $this->leaks->begin();
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
                if ($this->leaks->mode() !== LeakDetector::OFF) {
                    $route = $symfonyRequest?->attributes->get('_route');
                    $this->leaks->end($request->method . ' ' . (is_string($route) ? $route : (string) parse_url($request->uri, PHP_URL_PATH)));
                }
            }
        }
    }

    /**
     * Converts a Courser request to a Symfony request.
     */
    public function toSymfonyRequest(Request $request): SymfonyRequest
    {
        return $this->bridge->toRequest($request, $this->baseServer, SymfonyRequest::class, true);
    }

    /**
     * Converts a response to the status, the headers and the body (a string or a generator of chunks).
     *
     * @return array{0: int, 1: array<string, list<string>>, 2: string|\Generator<int, string, mixed, string>}
     */
    public function fromSymfonyResponse(Response $response): array
    {
        return $this->bridge->fromResponse($response);
    }

    private function send(Response $response): void
    {
        $this->bridge->send($response, $this->http);
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
     * Turns the upload tree into UploadedFile objects; see HttpFoundationBridge::files().
     *
     * @param array<array-key, mixed> $uploads
     *
     * @return array<array-key, mixed>
     */
    public static function files(array $uploads): array
    {
        return HttpFoundationBridge::files($uploads);
    }

    private function logThrowable(\Throwable $e): void
    {
        $log = $this->log ?? (defined('STDERR') ? STDERR : null);
        if (is_resource($log)) {
            fwrite($log, (string) $e . "\n");
        }
    }
}
