<?php

declare(strict_types=1);

namespace Courser\Bridge\Slim;

use Courser\Debug\LeakDetector;
use Courser\Exception\StreamStoppedException;
use Courser\Http\Globals;
use Courser\Http\HttpWorker;
use Courser\Http\Request;
use Psr\Http\Message\ResponseInterface;
use Psr\Http\Message\StreamInterface;
use Slim\App;
use Slim\Http\Body;
use Slim\Http\Environment;
use Slim\Http\Headers;
use Slim\Http\Request as SlimRequest;
use Slim\Http\Response as SlimResponse;
use Slim\Http\UploadedFile;
use Slim\Http\Uri;

/**
 * Runs a Slim 3 application, built once, under Courser.
 *
 * <code>
 * $app = new \Slim\App();
 * $app->get('/', function ($request, $response) { return $response->write('Hello'); });
 * SlimWorker::create($app)->serve();
 * </code>
 *
 * Each request is turned straight into Slim's own PSR-7 request
 * (Slim\Http\Request, so $request->getParam() and the body parsers work;
 * Slim 3 has no PSR-17 factories, so PSR7Worker is not used) and run
 * through App::process(), which routes it, runs the middleware and turns
 * exceptions into responses with Slim's errorHandler / phpErrorHandler
 * (a 500). The response is then sent: small bodies in one frame, larger
 * ones (or those of unknown size) streamed in chunks.
 *
 * Per request, when the container is Slim's (Pimple) container, the
 * entries that Slim's DefaultServicesProvider fills from the PHP-FPM
 * request are replaced:
 *   - environment: a Slim\Http\Environment of this request's server params
 *   - request:     this request (Slim\Http\Request)
 *   - response:    a fresh response from the container's own response
 *                  definition (the one it had when the worker was made)
 * $_SERVER is also replaced with the request's server params (see
 * Globals::server()). Nothing else in the container is reset: services
 * the app defines itself live for the worker's lifetime.
 *
 * What App::run() adds after process() (App::finalize(), protected) is
 * done here: the body is dropped for HEAD, Content-Type and Content-Length
 * for 204/205/304. No Content-Length is added (the server sets it), so the
 * addContentLengthHeader setting has no effect.
 */
final class SlimWorker
{
    /** Bodies up to this size go out in one frame by default (1 MiB). */
    public const DEFAULT_SINGLE_FRAME_LIMIT = 1024 * 1024;

    /** Larger bodies are streamed in chunks of this size by default (256 KiB). */
    public const DEFAULT_CHUNK_SIZE = 256 * 1024;

    /** @var array<array-key, mixed> the process's $_SERVER when the worker was made */
    private readonly array $originalServer;

    private readonly LeakDetector $leaks;

    /** @var mixed the container's raw response definition (a factory closure, usually) */
    private mixed $responseDefinition = null;

    public function __construct(
        private readonly App $app,
        private readonly HttpWorker $http,
        private readonly int $singleFrameLimit = self::DEFAULT_SINGLE_FRAME_LIMIT,
        private readonly int $chunkSize = self::DEFAULT_CHUNK_SIZE,
        ?LeakDetector $leaks = null,
    ) {
        $this->leaks = $leaks ?? LeakDetector::fromEnvironment();
        if ($singleFrameLimit < 0 || $chunkSize < 1) {
            throw new \InvalidArgumentException('The single-frame limit must be 0 or more, and the chunk size 1 or more.');
        }
        $this->originalServer = $_SERVER;
        $container = $app->getContainer();
        if ($container instanceof \Pimple\Container && isset($container['response'])) {
            $this->responseDefinition = $container->raw('response');
        }
    }

    /**
     * Makes a worker on the relay named by RR_RELAY; see Worker::create().
     */
    public static function create(App $app, bool $redirectOutput = true): self
    {
        return new self($app, HttpWorker::create($redirectOutput));
    }

    public function getApp(): App
    {
        return $this->app;
    }

    public function getLeakDetector(): LeakDetector
    {
        return $this->leaks;
    }

    public function getHttpWorker(): HttpWorker
    {
        return $this->http;
    }

    /**
     * Serves requests until the server asks the worker to stop.
     */
    public function serve(): void
    {
        while ($this->serveOne()) {
        }
    }

    /**
     * Waits for one request and answers it.
     *
     * A request that cannot be decoded, or anything thrown outside the app's
     * own error handling (a failing error handler, a failed send), is
     * reported with error(): the server answers 500 and this worker stays.
     *
     * @return bool false when the server asks the worker to stop
     */
    public function serveOne(): bool
    {
        return $this->http->serveOne($this->answer(...), 'Courser Slim bridge');
    }

    /**
     * Runs one request through the app and sends the response; never throws.
     */
    private function answer(Request $request): void
    {
        $this->leaks->begin();
        try {
            $this->respond($this->handle($request));
        } catch (\Throwable $e) {
            error_log('Courser Slim bridge: ' . $e);
            $this->http->error('Courser Slim bridge: ' . $e->getMessage());
        }
        if ($this->leaks->mode() !== LeakDetector::OFF) {
            $this->leaks->end($this->routeOf($request));
        }
    }

    /**
     * Runs one request through the app and returns its response (nothing is sent).
     */
    public function handle(Request $request): ResponseInterface
    {
        $server = Globals::server($request, $this->originalServer);
        // All six superglobals, for code that reads them.
        Globals::populate($request, null, $server);
        $slimRequest = $this->toSlimRequest($request, $server);
        $response = $this->resetContainer($slimRequest, $server);

        $response = $this->app->process($slimRequest, $response);

        return self::finalize($slimRequest, $response);
    }

    /**
     * Builds Slim's request for a Courser request.
     *
     * @param array<array-key, mixed> $server the server params
     */
    public function toSlimRequest(Request $request, array $server): SlimRequest
    {
        // From the absolute URI: the base path is '' (Uri::createFromEnvironment
        // would guess one from SCRIPT_NAME, which is the worker script here).
        $uri = Uri::createFromString($request->uri);

        $headers = new Headers();
        if (isset($server['HTTP_HOST'])) {
            $headers->set('Host', (string) $server['HTTP_HOST']);
        }
        foreach ($request->headers as $name => $values) {
            $headers->set($name, $values);
        }

        $stream = fopen('php://temp', 'w+b');
        if ($stream === false) {
            throw new \RuntimeException('Cannot open php://temp for the request body.');
        }
        if ($request->body !== '') {
            fwrite($stream, $request->body);
            rewind($stream);
        }

        $slim = new SlimRequest(
            $request->method,
            $uri,
            $headers,
            $request->cookies,
            $server,
            new Body($stream),
            self::uploads($request->uploads),
        );
        if ($request->parsed !== null) {
            $slim = $slim->withParsedBody($request->parsed);
        }

        return $slim->withAttributes($request->attributes);
    }

    /**
     * Sends a response: in one frame when the body is known to fit the
     * single-frame limit, otherwise in chunks of the chunk size.
     *
     * @return bool false when the server stopped a streamed response
     */
    public function respond(ResponseInterface $response): bool
    {
        $status = $response->getStatusCode();
        $headers = $response->getHeaders();
        $body = $response->getBody();
        if ($body->isSeekable()) {
            $body->rewind();
        }
        $size = $body->getSize();

        if ($size !== null && $size <= $this->singleFrameLimit) {
            return $this->http->respond($status, $body->getContents(), $headers);
        }

        return $this->http->respond($status, $this->chunks($body), $headers);
    }

    /**
     * Replaces the request-scoped entries of a Pimple container and returns
     * the response to start from.
     *
     * @param array<array-key, mixed> $server
     */
    private function resetContainer(SlimRequest $request, array $server): ResponseInterface
    {
        $container = $this->app->getContainer();
        if (!$container instanceof \Pimple\Container) {
            return self::defaultResponse();
        }

        $environment = new Environment($server);
        unset($container['environment'], $container['request'], $container['response']);
        $container['environment'] = static fn () => $environment;
        $container['request'] = static fn () => $request;
        if ($this->responseDefinition !== null) {
            $container['response'] = $this->responseDefinition;
            $response = $container['response'];
            if ($response instanceof ResponseInterface) {
                return $response;
            }
        }
        $response = self::defaultResponse();
        unset($container['response']);
        $container['response'] = static fn () => $response;

        return $response;
    }

    private static function defaultResponse(): ResponseInterface
    {
        return new SlimResponse(200, new Headers(['Content-Type' => 'text/html; charset=UTF-8']));
    }

    /**
     * What App::finalize() does that matters here.
     */
    private static function finalize(SlimRequest $request, ResponseInterface $response): ResponseInterface
    {
        $head = $request->getMethod() === 'HEAD';
        if (in_array($response->getStatusCode(), [204, 205, 304], true) && !$head) {
            return $response->withoutHeader('Content-Type')->withoutHeader('Content-Length');
        }
        if ($head) {
            $stream = fopen('php://temp', 'r+b');
            if ($stream === false) {
                throw new \RuntimeException('Cannot open php://temp for the HEAD body.');
            }

            return $response->withBody(new Body($stream));
        }

        return $response;
    }

    /**
     * Reads a body in chunks of the chunk size, holding the last one back
     * so that it rides in the final frame.
     *
     * @return \Generator<int, string, mixed, string>
     */
    private function chunks(StreamInterface $body): \Generator
    {
        $previous = null;
        $chunk = '';
        try {
            while (!$body->eof()) {
                $data = $body->read($this->chunkSize - strlen($chunk));
                if ($data === '') {
                    break;
                }
                $chunk .= $data;
                if (strlen($chunk) >= $this->chunkSize) {
                    if ($previous !== null) {
                        yield $previous;
                    }
                    $previous = $chunk;
                    $chunk = '';
                }
            }
            if ($chunk !== '') {
                if ($previous !== null) {
                    yield $previous;
                }
                $previous = $chunk;
            }
        } catch (StreamStoppedException) {
            return '';
        }

        return $previous ?? '';
    }

    /**
     * "GET /hello/{name}" for a request that matches a route (the leak
     * detector counts per route, not per path); the method and path otherwise.
     */
    private function routeOf(Request $request): string
    {
        $path = parse_url($request->uri, PHP_URL_PATH);
        $path = is_string($path) && $path !== '' ? $path : '/';
        $container = $this->app->getContainer();
        try {
            $router = $container->get('router');
            if ($router instanceof \Slim\Router) {
                // Router::dispatch() wants a whole request for its path; ask its (cached) dispatcher directly.
                $dispatcher = (fn (): \FastRoute\Dispatcher => $this->createDispatcher())->call($router);
                $info = $dispatcher->dispatch($request->method, '/' . ltrim($path, '/'));
                if (($info[0] ?? null) === \FastRoute\Dispatcher::FOUND) {
                    return $request->method . ' ' . $router->lookupRoute((string) $info[1])->getPattern();
                }
            }
        } catch (\Throwable) {
            // Not a route: count it under its path.
        }

        return $request->method . ' ' . $path;
    }

    /**
     * Turns the upload tree into Slim UploadedFile objects, keeping the nesting.
     *
     * @param array<array-key, mixed> $uploads
     *
     * @return array<array-key, mixed>
     */
    private static function uploads(array $uploads): array
    {
        $result = [];
        foreach ($uploads as $key => $node) {
            if (Globals::isUploadLeaf($node)) {
                $error = (int) $node['error'];
                $tmpName = (string) ($node['tmpName'] ?? '');
                if ($error === UPLOAD_ERR_OK && ($tmpName === '' || !is_file($tmpName))) {
                    $error = UPLOAD_ERR_NO_TMP_DIR;
                }
                $result[$key] = new UploadedFile(
                    $tmpName,
                    isset($node['name']) ? (string) $node['name'] : null,
                    isset($node['mime']) ? (string) $node['mime'] : null,
                    isset($node['size']) ? (int) $node['size'] : null,
                    $error,
                    false,
                );
            } elseif (is_array($node)) {
                $result[$key] = self::uploads($node);
            }
        }

        return $result;
    }
}
